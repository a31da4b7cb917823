import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { HttpProxyAgent } from 'hpagent';
import { getProxyForUrl } from 'proxy-from-env';
import { PRIVATE_DIR, PRIVATE_FILE } from '../box/modes.js';

/*
 * The package cache: an HTTP proxy on the host's loopback that the guest's apt, debootstrap and
 * kiwi use (http_proxy). Package files (.deb, .udeb) are kept by URL under the cache directory and
 * served from there the next time; everything else (indexes, other hosts, HTTPS tunnels) passes
 * through. Only the host writes the cache, with what it downloaded itself, so a build cannot plant
 * a package there for the next one; a file is renamed into place once complete, so builds that run
 * at once share the cache safely.
 */

/** What a run's proxy did. */
export interface CacheStats {
  /** Package files served from the cache, and their bytes. */
  hits: number;
  hitBytes: number;
  /** Package files downloaded (and kept), and their bytes. */
  misses: number;
  missBytes: number;
  /** Bytes of everything else that passed through (indexes, HTTPS). */
  passedBytes: number;
}

export interface PackageProxy {
  /** The proxy's port on the host's 127.0.0.1 (the guest reaches it as 10.0.2.2). */
  port: number;
  stats: CacheStats;
  close(): Promise<void>;
}

/** The file a package URL is kept in, or undefined when the URL is not a cacheable package file. */
export function cachePath(dir: string, url: URL): string | undefined {
  if (url.protocol !== 'http:' || url.search || !/\.u?deb$/.test(url.pathname)) return undefined;
  const segments = url.pathname.split('/').filter(Boolean).map((segment) => decodeURIComponent(segment));
  const safe = (part: string) => /^[A-Za-z0-9][A-Za-z0-9._+~:%-]*$/.test(part) && !part.includes('..');
  const host = url.port ? `${url.hostname}_${url.port}` : url.hostname;
  if (!safe(host) || !segments.every(safe)) return undefined;
  return join(dir, host, ...segments);
}

/** Headers that belong to one hop, not to the request or answer (RFC 9110 7.6.1). */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function endToEnd(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  return Object.fromEntries(Object.entries(headers).filter(([name, value]) => value !== undefined && !HOP_HEADERS.has(name))) as Record<string, string | string[]>;
}

/** Sends the request on to its server, through the host's own HTTP proxy when the environment names one. */
function forward(url: URL, method: string, headers: Record<string, string | string[]>): Promise<IncomingMessage> & { body: NodeJS.WritableStream } {
  const upstream = getProxyForUrl(url.href);
  const agent = upstream ? new HttpProxyAgent({ proxy: upstream, keepAlive: false }) : undefined;
  const outgoing = httpRequest(url, { method, headers, agent });
  const answer = new Promise<IncomingMessage>((resolve, reject) => outgoing.on('response', resolve).on('error', reject));
  return Object.assign(answer, { body: outgoing });
}

function refuse(response: ServerResponse, status: number, message: string): void {
  if (!response.headersSent) response.writeHead(status, { 'content-type': 'text/plain' });
  response.end(`boxbuild package cache: ${message}\n`);
}

/** Serves a package from the cache; false when it is not there. */
async function serveCached(file: string, request: IncomingMessage, response: ServerResponse, stats: CacheStats): Promise<boolean> {
  const found = await stat(file).catch(() => undefined);
  if (!found?.isFile()) return false;
  const now = new Date();
  await utimes(file, now, now).catch(() => {}); // the last use, for pruning
  stats.hits++;
  stats.hitBytes += found.size;
  response.writeHead(200, { 'content-length': found.size, 'content-type': 'application/vnd.debian.binary-package', 'x-boxbuild-cache': 'hit' });
  if (request.method === 'HEAD') response.end();
  else await pipeline(createReadStream(file), response);
  return true;
}

/** Downloads a package for the guest and keeps it; only a whole, successful answer is kept. */
async function fetchAndKeep(url: URL, file: string, request: IncomingMessage, response: ServerResponse, stats: CacheStats): Promise<void> {
  const headers = endToEnd(request.headers);
  delete headers.range; // the cache keeps whole files only
  const answer = forward(url, 'GET', headers);
  answer.body.end();
  const upstream = await answer;
  const length = Number(upstream.headers['content-length'] ?? NaN);
  if (upstream.statusCode !== 200) {
    response.writeHead(upstream.statusCode ?? 502, endToEnd(upstream.headers));
    await pipeline(upstream, response);
    return;
  }
  response.writeHead(200, endToEnd(upstream.headers)).flushHeaders();
  await mkdir(dirname(file), { recursive: true, mode: PRIVATE_DIR });
  const partial = `${file}.part-${randomBytes(6).toString('hex')}`;
  let bytes = 0;
  const keep = createWriteStream(partial, { flags: 'wx', mode: PRIVATE_FILE });
  keep.on('error', () => {}); // reported to the write that failed
  const write = (chunk: Buffer) => new Promise<void>((resolve, reject) => keep.write(chunk, (error) => (error ? reject(error) : resolve())));
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
          await write(chunk);
          if (held) yield held;
          held = chunk;
        }
        if (Number.isFinite(length) && bytes !== length) throw new Error(`got ${bytes} of ${length} bytes`);
        await new Promise<void>((resolve, reject) => keep.end((error?: Error | null) => (error ? reject(error) : resolve())));
        await rename(partial, file);
        stats.misses++;
        stats.missBytes += bytes;
        if (held) yield held;
      },
      response,
    );
  } finally {
    keep.destroy();
    await rm(partial, { force: true });
  }
}

/** Any other request: passed on as it is, both bodies streamed. */
async function passThrough(url: URL, request: IncomingMessage, response: ServerResponse, stats: CacheStats): Promise<void> {
  const answer = forward(url, request.method ?? 'GET', endToEnd(request.headers));
  request.pipe(answer.body);
  const upstream = await answer;
  upstream.on('data', (chunk: Buffer) => (stats.passedBytes += chunk.length));
  response.writeHead(upstream.statusCode ?? 502, endToEnd(upstream.headers));
  await pipeline(upstream, response);
}

/** CONNECT host:port (HTTPS): a tunnel, straight or through the host's HTTPS proxy. */
function tunnel(request: IncomingMessage, client: Socket, head: Buffer, stats: CacheStats): void {
  const target = request.url ?? '';
  const match = /^([^:\s]+|\[[^\]]+\]):(\d{1,5})$/.exec(target);
  if (!match) {
    client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    return;
  }
  const upstream = getProxyForUrl(`https://${target}/`);
  const via = upstream ? new URL(upstream) : undefined;
  const server = via ? connect(Number(via.port || 80), via.hostname) : connect(Number(match[2]), match[1]!.replace(/^\[|\]$/g, ''));
  server.on('connect', () => {
    if (via) server.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    else client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    server.write(head);
    server.on('data', (chunk: Buffer) => (stats.passedBytes += chunk.length));
    server.pipe(client);
    client.pipe(server);
  });
  const close = () => {
    server.destroy();
    client.destroy();
  };
  server.on('error', () => (client.writable ? client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n') : close()));
  client.on('error', close);
  client.on('close', close);
}

/** Starts a run's package proxy on 127.0.0.1 over the cache directory `dir`. */
export async function startPackageProxy(dir: string): Promise<PackageProxy> {
  const stats: CacheStats = { hits: 0, hitBytes: 0, misses: 0, missBytes: 0, passedBytes: 0 };
  const sockets = new Set<Socket>();
  const server = createServer((request, response) => {
    let url: URL;
    try {
      url = new URL(request.url ?? '');
      if (url.protocol !== 'http:') throw new Error('not http');
    } catch {
      refuse(response, 400, 'only absolute http:// URLs (this is a proxy)');
      return;
    }
    const file = request.method === 'GET' || request.method === 'HEAD' ? cachePath(dir, url) : undefined;
    const handled = (async () => {
      if (file && (await serveCached(file, request, response, stats))) return;
      if (file && request.method === 'GET') await fetchAndKeep(url, file, request, response, stats);
      else await passThrough(url, request, response, stats);
    })();
    handled.catch((error: Error) => (response.headersSent ? response.destroy() : refuse(response, 502, error.message)));
  });
  server.on('connect', (request: IncomingMessage, client: Socket, head: Buffer) => tunnel(request, client, head, stats));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    stats,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
