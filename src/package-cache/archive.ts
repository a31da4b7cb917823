import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzip } from 'node:zlib';
import { runChild } from '../util/child.js';

/*
 * What the package cache knows of the Debian archives the guest downloads from: the SHA256 and
 * size of every package that a package index lists whose own hash a signed Release file lists.
 * It learns from the bodies that pass through the egress proxy (InRelease, or Release and
 * Release.gpg; then Packages, Packages.gz, Packages.xz, or the same by hash); the chain is the one
 * apt checks: the Release file's OpenPGP signature (gpgv, the host's Debian archive keyring) →
 * the index's SHA256 → each package's SHA256. The cache keeps a package only when it matches.
 */

/** Where the host keeps the Debian archive's keys (Debian package debian-archive-keyring). */
export const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** The largest package index read (uncompressed); Debian's biggest, main/binary-amd64, is about 50 MiB. */
const MAX_INDEX_BYTES = 512 << 20;

export interface PackageEntry {
  sha256: string;
  size: number;
}

/** An index a verified Release file lists: its archive root and its name below dists/SUITE/. */
interface IndexEntry {
  root: string;
  name: string;
  size: number;
}

const INDEX_PATH = /\/dists\/(?:[^/]+\/)+(?:InRelease|Release|Release\.gpg|Packages(?:\.gz|\.xz)?|by-hash\/SHA256\/[0-9a-f]{64})$/;

/** The archive root of a dists/ URL (what Filename: fields are relative to). */
const archiveRoot = (url: string) => url.slice(0, url.lastIndexOf('/dists/'));

/** A package URL's key: scheme, host, port and the decoded path (apt writes + as %2b, Filename: as +). */
export function packageKey(url: URL): string | undefined {
  try {
    return `${url.protocol}//${url.host}${decodeURIComponent(url.pathname)}`;
  } catch {
    return undefined;
  }
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The SHA256 section of a Release file: hash, size and name of each index. */
function releaseIndexes(text: string): { hash: string; size: number; name: string }[] {
  const section = /^SHA256:\n((?:[ \t].*\n?)*)/m.exec(text)?.[1] ?? '';
  return section.split('\n').flatMap((line) => {
    const match = /^\s+([0-9a-f]{64})\s+(\d+)\s+(\S+)\s*$/.exec(line);
    return match ? [{ hash: match[1]!, size: Number(match[2]), name: match[3]! }] : [];
  });
}

/** Filename, Size and SHA256 of each stanza of a Packages file. */
function* packageStanzas(text: string): Generator<{ filename: string; entry: PackageEntry }> {
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(\\S+)[ \\t]*$`, 'm').exec(stanza)?.[1];
    const [filename, size, hash] = [field('Filename'), field('Size'), field('SHA256')];
    if (filename && size && /^\d+$/.test(size) && hash && /^[0-9a-f]{64}$/.test(hash) && !filename.split('/').includes('..')) {
      yield { filename, entry: { sha256: hash, size: Number(size) } };
    }
  }
}

/** Runs xz -dc on `data`, giving up beyond `max` bytes of output. */
function unxz(data: Buffer, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const chunks: Buffer[] = [];
    let size = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) child.kill('SIGKILL');
      else chunks.push(chunk);
    });
    child.stdin.on('error', () => {}); // it stopped reading: the exit says why
    child.on('error', reject);
    child.on('close', (code) => (code === 0 && size <= max ? resolve(Buffer.concat(chunks)) : reject(new Error(`xz -dc: ${size > max ? 'too large' : `exit status ${code}`}`))));
    child.stdin.end(data);
  });
}

function uncompressed(name: string, data: Buffer): Promise<Buffer> {
  if (name.endsWith('.xz')) return unxz(data, MAX_INDEX_BYTES);
  if (name.endsWith('.gz')) {
    return new Promise((resolve, reject) => gunzip(data, { maxOutputLength: MAX_INDEX_BYTES }, (error, result) => (error ? reject(error) : resolve(result))));
  }
  return Promise.resolve(data);
}

export class ArchiveIndex {
  private readonly indexes = new Map<string, IndexEntry>();
  private readonly packages = new Map<string, PackageEntry>();
  /** Release files and their detached signatures, by URL, until both are in. */
  private readonly detached = new Map<string, { release?: Buffer; signature?: Buffer }>();
  /** What was passed in so far, worked through in order. */
  private work: Promise<void> = Promise.resolve();

  /**
   * `keyring`: the keys a Release file must be signed with. Without one (a host without Debian's
   * keyring), Release files are taken as they come: the chain still ties each package to them.
   */
  constructor(private readonly keyring: string | undefined = existsSync(DEBIAN_KEYRING) ? DEBIAN_KEYRING : undefined) {}

  /** Whether a URL's body may teach the index something (a Release file or a package index). */
  static reads(url: URL): boolean {
    return url.protocol === 'http:' && !url.search && INDEX_PATH.test(url.pathname);
  }

  /** Takes in the whole body of a URL that `reads`; processed in the background. */
  learn(url: URL, body: Buffer): void {
    this.work = this.work.then(() => this.process(url.href, body)).catch(() => {}); // a body that proves nothing teaches nothing
  }

  /** The package a URL should hold, once everything passed in so far is processed. */
  async expected(url: URL): Promise<PackageEntry | undefined> {
    await this.work;
    const key = packageKey(url);
    return key === undefined ? undefined : this.packages.get(key);
  }

  private async process(url: string, body: Buffer): Promise<void> {
    const name = url.slice(url.lastIndexOf('/') + 1);
    if (name === 'InRelease') return this.addRelease(url, await this.signedText(body));
    if (name === 'Release' || name === 'Release.gpg') {
      const dir = url.slice(0, url.lastIndexOf('/'));
      const pair = this.detached.get(dir) ?? {};
      this.detached.set(dir, name === 'Release' ? { ...pair, release: body } : { ...pair, signature: body });
      const { release, signature } = this.detached.get(dir)!;
      if (release && (signature || !this.keyring)) return this.addRelease(`${dir}/Release`, await this.signedText(release, signature));
      return;
    }
    const index = this.indexes.get(sha256(body));
    if (!index || index.size !== body.length || !/(^|\/)Packages(\.gz|\.xz)?$/.test(index.name)) return;
    const text = (await uncompressed(index.name, body)).toString('utf8');
    const root = packageKey(new URL(`${index.root}/`));
    for (const { filename, entry } of packageStanzas(text)) this.packages.set(`${root}${filename}`, entry);
  }

  private addRelease(url: string, text: string | undefined): void {
    if (text === undefined) return;
    for (const { hash, size, name } of releaseIndexes(text)) this.indexes.set(hash, { root: archiveRoot(url), name, size });
  }

  /**
   * The signed text of a Release file: an InRelease's clear-signed part, or a Release with its
   * detached signature; undefined when the signature does not verify with the keyring.
   */
  private async signedText(data: Buffer, signature?: Buffer): Promise<string | undefined> {
    if (!this.keyring) return signature ? data.toString('utf8') : clearsignedBody(data.toString('utf8'));
    const dir = await mkdtemp(join(tmpdir(), 'boxbuild-gpgv-'));
    try {
      const [file, sig, out] = [join(dir, 'release'), join(dir, 'release.gpg'), join(dir, 'signed')];
      await writeFile(file, data);
      if (signature) await writeFile(sig, signature);
      const args = ['--homedir', dir, '--keyring', this.keyring, ...(signature ? [sig, file] : ['--output', out, file])];
      const result = await runChild('gpgv', args);
      if (result.exitCode !== 0) return undefined;
      return signature ? data.toString('utf8') : await readFile(out, 'utf8');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** The text of a clear-signed message, signature not checked (a host without the keyring). */
function clearsignedBody(text: string): string | undefined {
  return /^-----BEGIN PGP SIGNED MESSAGE-----\r?\n(?:[^\r\n]+\r?\n)*\r?\n([\s\S]*?)\r?\n-----BEGIN PGP SIGNATURE-----/.exec(text)?.[1]?.replace(/^- /gm, '');
}
