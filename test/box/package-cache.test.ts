import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { type IncomingMessage, type Server, createServer, request } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type PackageProxy, startPackageProxy } from '../../src/package-cache/proxy.js';
import { tempDir } from '../helpers/temp.js';

/** A Debian mirror on 127.0.0.1: package files, an index that changes, and a package cut short. */
class Mirror {
  readonly hits: string[] = [];
  readonly packages = new Map([
    ['/debian/pool/main/h/hello/hello_2.10-3_amd64.deb', randomBytes(3 << 20)],
    ['/debian/pool/main/a/all/all_1_all.deb', randomBytes(200_000)],
  ]);
  private index = 0;
  private server!: Server;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.hits.push(req.url!);
      const data = this.packages.get(req.url!);
      if (data) return res.writeHead(200, { 'content-length': data.length }).end(data);
      if (req.url === '/debian/dists/bookworm/InRelease') return res.writeHead(200).end(`index ${++this.index}\n`);
      if (req.url === '/debian/pool/main/c/cut/cut_1_amd64.deb') {
        res.writeHead(200, { 'content-length': 100_000 });
        res.write(randomBytes(40_000));
        setTimeout(() => res.destroy(), 50);
        return;
      }
      res.writeHead(404).end('not here\n');
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** GET through the proxy, as apt does (absolute URL); resolves with status, body, and whether the body was whole. */
function viaProxy(proxy: PackageProxy, url: string): Promise<{ status: number; body: Buffer; whole: boolean; cache?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxy.port, path: url, headers: { host: new URL(url).host } }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      const done = (whole: boolean) => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), whole, cache: res.headers['x-boxbuild-cache'] as string | undefined });
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
      res.on('aborted', () => done(false));
    });
    req.on('error', reject);
    req.end();
  });
}

const filesUnder = (dir: string) => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));

describe('package cache proxy', () => {
  const mirror = new Mirror();
  let dir: string;
  let proxy: PackageProxy;
  beforeAll(async () => {
    await mirror.start();
    dir = join(tempDir(), 'packages');
    proxy = await startPackageProxy(dir);
  });
  afterAll(async () => {
    await proxy.close();
    await mirror.close();
  });

  test('a package is downloaded once, kept by its URL, and served from the cache the next time', async () => {
    const path = '/debian/pool/main/h/hello/hello_2.10-3_amd64.deb';
    const first = await viaProxy(proxy, mirror.url(path));
    const second = await viaProxy(proxy, mirror.url(path));
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(first.body.equals(mirror.packages.get(path)!)).toBe(true);
    expect(second.body.equals(mirror.packages.get(path)!)).toBe(true);
    expect(second.cache).toBe('hit');
    expect(mirror.hits.filter((hit) => hit === path)).toHaveLength(1);
    expect(readFileSync(join(dir, `127.0.0.1_${mirror.port}`, path)).equals(mirror.packages.get(path)!)).toBe(true);
    expect(proxy.stats).toMatchObject({ hits: 1, hitBytes: 3 << 20, misses: 1, missBytes: 3 << 20 });
  });

  test('builds asking for the same new package at once all get it whole, and the cache holds one good copy', async () => {
    const path = '/debian/pool/main/a/all/all_1_all.deb';
    const answers = await Promise.all([1, 2, 3, 4].map(() => viaProxy(proxy, mirror.url(path))));
    for (const answer of answers) expect(answer.body.equals(mirror.packages.get(path)!)).toBe(true);
    expect(readFileSync(join(dir, `127.0.0.1_${mirror.port}`, path)).equals(mirror.packages.get(path)!)).toBe(true);
    expect(filesUnder(dir).filter((file) => file.includes('.part-'))).toEqual([]);
  });

  test('indexes pass through: every request reaches the mirror and nothing is kept', async () => {
    const path = '/debian/dists/bookworm/InRelease';
    expect((await viaProxy(proxy, mirror.url(path))).body.toString()).toMatch(/^index \d+\n$/);
    const again = await viaProxy(proxy, mirror.url(path));
    expect(again.cache).toBeUndefined();
    expect(mirror.hits.filter((hit) => hit === path)).toHaveLength(2);
    expect(filesUnder(dir).some((file) => file.includes('InRelease'))).toBe(false);
  });

  test('a package cut short reaches the guest incomplete and is not kept; a 404 is passed on and not kept', async () => {
    const cut = await viaProxy(proxy, mirror.url('/debian/pool/main/c/cut/cut_1_amd64.deb'));
    expect(cut.whole).toBe(false);
    const missing = await viaProxy(proxy, mirror.url('/debian/pool/main/m/missing/missing_1_amd64.deb'));
    expect(missing.status).toBe(404);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(filesUnder(dir).filter((file) => /cut|missing|\.part-/.test(file))).toEqual([]);
  });

  test('a URL that would climb out of the cache directory is passed through, never written', async () => {
    const before = filesUnder(dir);
    const answer = await viaProxy(proxy, mirror.url('/debian/..%2f..%2f..%2fescape.deb'));
    expect(answer.status).toBe(404);
    expect(filesUnder(dir)).toEqual(before);
    expect(existsSync(join(dir, '..', 'escape.deb'))).toBe(false);
  });

  test('CONNECT opens a tunnel (HTTPS repositories pass through)', async () => {
    const socket = connect(proxy.port, '127.0.0.1');
    const text = await new Promise<string>((resolve, reject) => {
      let received = '';
      socket.on('connect', () => socket.write(`CONNECT 127.0.0.1:${mirror.port} HTTP/1.1\r\nHost: 127.0.0.1:${mirror.port}\r\n\r\n`));
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        if (received.includes('200 Connection Established\r\n\r\n') && !received.includes('GET-SENT')) {
          received += 'GET-SENT';
          socket.write('GET /debian/dists/bookworm/InRelease HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        }
      });
      socket.on('end', () => resolve(received));
      socket.on('error', reject);
    });
    expect(text).toMatch(/HTTP\/1\.1 200 OK[\s\S]*index \d+/);
  });
});
