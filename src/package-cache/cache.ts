import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PRIVATE_DIR, PRIVATE_FILE } from '../box/modes.js';
import { ArchiveIndex, type PackageEntry } from './archive.js';

/*
 * The package cache of KIWI builds, part of the run's egress proxy (src/network/egress.ts): package
 * files (.deb, .udeb) of the mirrors the build names are kept by the URL the proxy fetched them from
 * and served from there the next time; everything else passes through. A package is kept only when
 * its SHA256 and size are those a signed package index gives (src/package-cache/archive.ts), and a
 * kept one is served only while it still matches: a build cannot plant a package for the next one,
 * whatever it asks for. A file is renamed into place once complete, so builds that run at once
 * share the cache safely; files and directories are the user's alone.
 */

/** What the package cache did in a run. */
export interface CacheStats {
  /** Package files served from the cache, and their bytes. */
  hits: number;
  hitBytes: number;
  /** Package files downloaded and kept, and their bytes. */
  misses: number;
  missBytes: number;
  /** Package files downloaded and passed on but not kept (no signed index vouched for them), and their bytes. */
  unchecked: number;
  uncheckedBytes: number;
}

/** The largest package file kept (a larger one is passed on, not kept). */
export const MAX_PACKAGE_BYTES = 512 << 20;

/** The mirrors the Debian boxes themselves name. */
export const DEBIAN_MIRRORS = ['http://deb.debian.org/debian', 'http://deb.debian.org/debian-security', 'http://security.debian.org/debian-security'];

/** The file a package URL is kept in, or undefined when the URL is not a cacheable package file. */
export function cachePath(dir: string, url: URL): string | undefined {
  if (url.protocol !== 'http:' || url.search || !/\.u?deb$/.test(url.pathname)) return undefined;
  let segments: string[];
  try {
    segments = url.pathname.split('/').filter(Boolean).map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
  const safe = (part: string) => /^[A-Za-z0-9][A-Za-z0-9._+~:%-]*$/.test(part) && !part.includes('..');
  const host = url.port ? `${url.hostname}_${url.port}` : url.hostname;
  if (!safe(host) || !segments.every(safe)) return undefined;
  return join(dir, host, ...segments);
}

const XML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/**
 * The plain-HTTP repositories a KIWI build names: the description's `<repository><source
 * path="…">` (config.xml or *.kiwi) and kiwi's --add-repo/--set-repo among the build's words.
 */
export async function buildMirrors(description: string, words: string[]): Promise<string[]> {
  const names = (await readdir(description).catch(() => [] as string[])).filter((name) => name === 'config.xml' || name.endsWith('.kiwi'));
  const texts = await Promise.all(names.map((name) => readFile(join(description, name), 'utf8').catch(() => '')));
  const fromXml = texts.flatMap((text) => [...text.matchAll(/<source\b[^>]*?\bpath\s*=\s*(?:"([^"]*)"|'([^']*)')/g)].map((match) => match[1] ?? match[2] ?? ''));
  const fromWords = words.flatMap((word, index) => {
    const value = /^--(?:add|set)-repo=(.*)$/s.exec(word)?.[1] ?? (/^--(?:add|set)-repo$/.test(word) ? words[index + 1] : undefined);
    return value === undefined ? [] : [value.split(',')[0]!];
  });
  return [...fromXml, ...fromWords]
    .map((path) => path.replace(/&(amp|lt|gt|quot|apos);/g, (_, name: string) => XML_ENTITIES[name]!))
    .filter((path) => /^http:\/\//i.test(path));
}

/** Headers that belong to one hop, not to the request or answer (RFC 9110 7.6.1), and Host (the URL's, never the guest's). */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

export function endToEnd(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  return Object.fromEntries(Object.entries(headers).filter(([name, value]) => value !== undefined && !HOP_HEADERS.has(name))) as Record<string, string | string[]>;
}

/** Headers that would make a server answer with less than the whole body. */
export const PARTIAL_HEADERS = ['range', 'if-range', 'if-modified-since', 'if-none-match', 'if-match', 'if-unmodified-since'];

/** Sends a request upstream (through the egress proxy's checks) and resolves with the answer. */
export type Fetch = (method: 'GET' | 'HEAD', headers: Record<string, string | string[]>) => Promise<IncomingMessage>;

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class PackageCache {
  readonly stats: CacheStats = { hits: 0, hitBytes: 0, misses: 0, missBytes: 0, unchecked: 0, uncheckedBytes: 0 };
  /** Mirror URLs, each ending in /. */
  private readonly mirrors: string[];

  private constructor(
    readonly dir: string,
    mirrors: string[],
    readonly archive: ArchiveIndex,
    private readonly maxPackageBytes: number,
  ) {
    this.mirrors = mirrors.flatMap((mirror) => {
      try {
        return [new URL(mirror.endsWith('/') ? mirror : `${mirror}/`).href];
      } catch {
        return [];
      }
    });
  }

  /**
   * The cache in `dir` for the mirrors named; `root`, the directory of all package caches, and
   * every directory down to `dir` are made private (0700).
   */
  static async open(root: string, dir: string, mirrors: string[], options: { archive?: ArchiveIndex; maxPackageBytes?: number } = {}): Promise<PackageCache> {
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
    for (let path = dir; path.startsWith(root) && path !== dirname(path); path = dirname(path)) await chmod(path, PRIVATE_DIR);
    return new PackageCache(dir, mirrors, options.archive ?? new ArchiveIndex(), options.maxPackageBytes ?? MAX_PACKAGE_BYTES);
  }

  private onMirror(url: URL): boolean {
    return url.protocol === 'http:' && this.mirrors.some((mirror) => url.href.startsWith(mirror));
  }

  /** Whether the cache answers requests for this URL: a package file on a mirror of the build. */
  serves(url: URL): boolean {
    return this.onMirror(url) && cachePath(this.dir, url) !== undefined;
  }

  /** Whether the cache learns from the body of this URL's answer: a Release file or package index of a mirror. */
  reads(url: URL): boolean {
    return this.onMirror(url) && ArchiveIndex.reads(url);
  }

  learn(url: URL, body: Buffer): void {
    this.archive.learn(url, body);
  }

  /** Answers a GET or HEAD of a URL the cache `serves`: from the cache, or fetched (and kept when it checks out). */
  async answer(url: URL, request: IncomingMessage, response: ServerResponse, fetch: Fetch): Promise<void> {
    const file = cachePath(this.dir, url)!;
    const entry = await this.archive.expected(url);
    if (entry && (await this.serveKept(file, entry, request, response))) return;
    const headers = endToEnd(request.headers);
    for (const name of PARTIAL_HEADERS) delete headers[name]; // the cache keeps whole files only
    if (request.method === 'HEAD') {
      const answer = await fetch('HEAD', headers);
      response.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
      await pipeline(answer, response);
      return;
    }
    await this.fetchAndKeep(url, file, entry, await fetch('GET', headers), response);
  }

  /** Serves a kept package that still matches its index entry; false when there is none (a stale one is removed). */
  private async serveKept(file: string, entry: PackageEntry, request: IncomingMessage, response: ServerResponse): Promise<boolean> {
    const found = await stat(file).catch(() => undefined);
    if (!found?.isFile()) return false;
    if (found.size !== entry.size || (await fileSha256(file)) !== entry.sha256) {
      await rm(file, { force: true });
      return false;
    }
    const now = new Date();
    await utimes(file, now, now).catch(() => {}); // the last use, for pruning
    this.stats.hits++;
    this.stats.hitBytes += found.size;
    response.writeHead(200, { 'content-length': found.size, 'content-type': 'application/vnd.debian.binary-package', 'x-boxbuild-cache': 'hit' });
    if (request.method === 'HEAD') response.end();
    else await pipeline(createReadStream(file), response);
    return true;
  }

  /**
   * Passes a package on to the guest while writing it to a partial file, and keeps it when it is
   * whole and matches its signed index entry. A body longer than the entry says is not the
   * package: the transfer is aborted. One longer than maxPackageBytes is passed on, not kept. When
   * the guest has the last byte, the package is in the cache or its partial file is gone.
   */
  private async fetchAndKeep(url: URL, file: string, known: PackageEntry | undefined, upstream: IncomingMessage, response: ServerResponse): Promise<void> {
    if (upstream.statusCode !== 200) {
      response.writeHead(upstream.statusCode ?? 502, endToEnd(upstream.headers));
      await pipeline(upstream, response);
      return;
    }
    const length = Number(upstream.headers['content-length'] ?? NaN);
    response.writeHead(200, endToEnd(upstream.headers)).flushHeaders();
    let keep = !(length > this.maxPackageBytes);
    await mkdir(dirname(file), { recursive: true, mode: PRIVATE_DIR });
    const partial = `${file}.part-${randomBytes(6).toString('hex')}`;
    const hash = createHash('sha256');
    let bytes = 0;
    const out = createWriteStream(partial, { flags: 'wx', mode: PRIVATE_FILE });
    out.on('error', () => {}); // reported to the write that failed
    const write = (chunk: Buffer) => new Promise<void>((resolve, reject) => out.write(chunk, (error) => (error ? reject(error) : resolve())));
    const stats = this.stats;
    const archive = this.archive;
    const maxBytes = this.maxPackageBytes;
    try {
      // Each chunk goes to the file, then to the guest: a slow guest or a full disk slows the download
      // down. The last chunk waits until the file is in place, so a guest that has the whole package
      // (its content-length) finds it in the cache.
      await pipeline(
        upstream,
        async function* (source: AsyncIterable<Buffer>) {
          let held: Buffer | undefined;
          for await (const chunk of source) {
            bytes += chunk.length;
            if (known && bytes > known.size) throw new Error(`${url.href}: more than the ${known.size} bytes its signed index gives`);
            if (keep && bytes > maxBytes) keep = false;
            if (keep) {
              hash.update(chunk);
              await write(chunk);
            }
            if (held) yield held;
            held = chunk;
          }
          if (Number.isFinite(length) && bytes !== length) throw new Error(`got ${bytes} of ${length} bytes`);
          await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
          const entry = known ?? (await archive.expected(url));
          if (keep && entry && entry.size === bytes && entry.sha256 === hash.digest('hex')) {
            await rename(partial, file);
            stats.misses++;
            stats.missBytes += bytes;
          } else {
            await rm(partial, { force: true }); // gone before the guest has the last byte, as a kept one is in place
            stats.unchecked++;
            stats.uncheckedBytes += bytes;
          }
          if (held) yield held;
        },
        response,
      );
    } finally {
      out.destroy();
      await rm(partial, { force: true });
    }
  }
}
