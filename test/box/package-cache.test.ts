import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type OutgoingHttpHeaders, type Server, createServer, request } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type EgressProxy, startEgressProxy } from '../../src/network/egress.js';
import { ArchiveIndex } from '../../src/package-cache/archive.js';
import { PackageCache, buildMirrors, cachePath } from '../../src/package-cache/cache.js';
import { tempDir } from '../helpers/temp.js';

const SIGNER = 'archive@example.org';
const SOMEONE_ELSE = 'someone-else@example.org';
let gnupg: string;

/** gpg in the test's own GNUPGHOME, never the user's. */
async function gpg(args: string[], input?: string): Promise<Buffer> {
  const result = await execa('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { env: { GNUPGHOME: gnupg }, input, encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(result.stdout);
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * A Debian mirror on 127.0.0.1: a signed InRelease per suite listing a Packages.gz, packages, and
 * what misbehaving mirrors (or attackers) do: a package cut short, one longer than its index says,
 * one that is not what its index says, and other bytes for another Host header.
 */
class Mirror {
  readonly hits: { url: string; host?: string }[] = [];
  readonly files = new Map<string, Buffer>();
  /** What the mirror answers for a path when asked with Host: evil.local (another site on the same server). */
  readonly evil = new Map<string, Buffer>();
  private server!: Server;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.hits.push({ url: req.url!, host: req.headers.host });
      const data = (req.headers.host === 'evil.local' && this.evil.get(req.url!)) || this.files.get(req.url!);
      if (data) return res.writeHead(200, { 'content-length': data.length }).end(data);
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

  /**
   * Publishes suite `suite`: its packages (what the index says of each), a Packages.gz (or .xz, also
   * by hash) and an InRelease (or a Release with a detached Release.gpg) signed by `signer`.
   */
  async publish(suite: string, signer: string, packages: { path: string; indexed: Buffer; served?: Buffer }[], how: { xz?: boolean; detached?: boolean } = {}): Promise<void> {
    const stanzas = packages.map(({ path, indexed }) => `Package: ${path.split('/').pop()!.split('_')[0]}\nFilename: ${path.replace(/^\/debian\//, '')}\nSize: ${indexed.length}\nSHA256: ${sha256(indexed)}\n`);
    const index = how.xz ? (await execa('xz', ['-c'], { input: stanzas.join('\n'), encoding: 'buffer', stripFinalNewline: false })).stdout : gzipSync(stanzas.join('\n'));
    const name = `main/binary-amd64/Packages.${how.xz ? 'xz' : 'gz'}`;
    const release = `Origin: test\nSuite: ${suite}\nSHA256:\n ${sha256(Buffer.from(index))} ${index.length} ${name}\n`;
    this.files.set(`/debian/dists/${suite}/${name}`, Buffer.from(index));
    this.files.set(`/debian/dists/${suite}/main/binary-amd64/by-hash/SHA256/${sha256(Buffer.from(index))}`, Buffer.from(index));
    if (how.detached) {
      this.files.set(`/debian/dists/${suite}/Release`, Buffer.from(release));
      this.files.set(`/debian/dists/${suite}/Release.gpg`, await gpg(['--local-user', signer, '--detach-sign', '--output', '-'], release));
    } else {
      this.files.set(`/debian/dists/${suite}/InRelease`, await gpg(['--local-user', signer, '--clearsign', '--output', '-'], release));
    }
    for (const { path, indexed, served } of packages) this.files.set(path, served ?? indexed);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A host service on 127.0.0.1 the proxy must not reach; it counts what reaches it. */
async function hostService(): Promise<{ server: Server; port: number; reached: string[] }> {
  const reached: string[] = [];
  const server = createServer((req, res) => reached.push(req.url!) && res.end('secret\n'));
  server.on('connection', () => reached.push('connection'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, reached };
}

interface Answer {
  status: number;
  body: Buffer;
  whole: boolean;
  cache?: string;
}

/** A request to the egress proxy on its Unix socket, as apt sends one (absolute URL); `host` overrides the Host header. */
function viaProxy(socketPath: string, url: string, headers: OutgoingHttpHeaders = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: url, method, headers: { host: new URL(url).host, ...headers } }, (res: IncomingMessage) => {
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

/** Sends CONNECT target on a fresh connection to the proxy; resolves with everything it answered. */
function connectVia(socketPath: string, target: string, then?: string): Promise<string> {
  const socket = connect(socketPath);
  return new Promise<string>((resolve, reject) => {
    let received = '';
    socket.on('connect', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (then && received.includes('200 Connection Established\r\n\r\n') && !received.includes('SENT')) {
        received += 'SENT';
        socket.write(then);
      }
    });
    socket.on('end', () => resolve(received));
    socket.on('error', reject);
  });
}

const filesUnder = (dir: string) => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));

describe('the package cache in the egress proxy', () => {
  const mirror = new Mirror();
  const hello = { path: '/debian/pool/main/h/hello/hello_2.10-3_amd64.deb', indexed: randomBytes(3 << 20) };
  const all = { path: '/debian/pool/main/a/all/all_1_all.deb', indexed: randomBytes(200_000) };
  const poisoned = { path: '/debian/pool/main/p/poisoned/poisoned_1_amd64.deb', indexed: randomBytes(50_000) };
  const tampered = { path: '/debian/pool/main/t/tampered/tampered_1_amd64.deb', indexed: randomBytes(50_000), served: randomBytes(50_000) };
  const long = { path: '/debian/pool/main/l/long/long_1_amd64.deb', indexed: randomBytes(1000), served: randomBytes(300_000) };
  const big = { path: '/debian/pool/main/b/big/big_1_amd64.deb', indexed: randomBytes(5 << 20) };
  const legacy = { path: '/debian/pool/main/o/old/old_1_amd64.deb', indexed: randomBytes(30_000) };
  const cut = { path: '/debian/pool/main/c/cut/cut_1_amd64.deb', indexed: randomBytes(100_000) };
  const unlisted = { path: '/debian/pool/main/u/unlisted/unlisted_1_amd64.deb', indexed: randomBytes(20_000) };
  const badSigned = { path: '/debian/pool/main/f/forged/forged_1_amd64.deb', indexed: randomBytes(20_000) };
  const offMirror = { path: '/other/pool/x/x_1_all.deb', indexed: randomBytes(10_000) };
  const debootstrapped = { path: '/debian/pool/main/d/dbs/dbs_1_amd64.deb', indexed: randomBytes(40_000) };
  let root: string;
  let dir: string;
  let socket: string;
  let proxy: EgressProxy;
  let cache: PackageCache;
  let service: Awaited<ReturnType<typeof hostService>>;
  const get = (url: string, headers?: OutgoingHttpHeaders) => viaProxy(socket, url, headers);

  beforeAll(async () => {
    gnupg = mkdtempSync(join(tmpdir(), 'bb-box-gnupg-'));
    for (const user of [SIGNER, SOMEONE_ELSE]) await gpg(['--quick-gen-key', user, 'ed25519', 'sign', 'never']);
    const keyring = join(gnupg, 'archive-keyring.gpg');
    writeFileSync(keyring, await gpg(['--export', SIGNER]));
    await mirror.start();
    await mirror.publish('bookworm', SIGNER, [hello, all, poisoned, tampered, long, big, legacy, cut]);
    await mirror.publish('forged', SOMEONE_ELSE, [badSigned]);
    await mirror.publish('detached', SIGNER, [debootstrapped], { xz: true, detached: true });
    mirror.files.delete(cut.path); // listed, but the mirror cuts it short
    mirror.files.set(unlisted.path, unlisted.indexed);
    mirror.files.set(offMirror.path, offMirror.indexed);
    mirror.evil.set(poisoned.path, randomBytes(50_000));
    service = await hostService();
    const run = tempDir();
    root = join(run, 'packages');
    mkdirSync(root, { mode: 0o755 });
    dir = join(root, 'box', 'x86_64');
    socket = join(run, 'egress.sock');
    cache = await PackageCache.open(root, dir, [mirror.url('/debian')], { archive: new ArchiveIndex(keyring), maxPackageBytes: 4 << 20 });
    proxy = await startEgressProxy({ listen: { socket }, mode: 'filtered', allow: [{ host: '127.0.0.1', port: mirror.port }], cache });
    // What apt does first: the signed Release file, then the index it lists.
    for (const suite of ['bookworm', 'forged']) {
      for (const path of [`/debian/dists/${suite}/InRelease`, `/debian/dists/${suite}/main/binary-amd64/Packages.gz`]) expect((await get(mirror.url(path))).status).toBe(200);
    }
  });
  afterAll(async () => {
    await proxy.close();
    await mirror.close();
    service.server.close();
    await execa('gpgconf', ['--kill', 'all'], { env: { GNUPGHOME: gnupg }, reject: false });
    rmSync(gnupg, { recursive: true, force: true });
  });

  test('a package is downloaded once, kept by its URL, and served from the cache the next time', async () => {
    const first = await get(mirror.url(hello.path));
    const second = await get(mirror.url(hello.path));
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(first.body.equals(hello.indexed)).toBe(true);
    expect(second.body.equals(hello.indexed)).toBe(true);
    expect(second.cache).toBe('hit');
    expect(mirror.hits.filter((hit) => hit.url === hello.path)).toHaveLength(1);
    expect(readFileSync(join(dir, `127.0.0.1_${mirror.port}`, hello.path)).equals(hello.indexed)).toBe(true);
    expect(cache.stats).toMatchObject({ hits: 1, hitBytes: 3 << 20, misses: 1, missBytes: 3 << 20 });
  });

  test('builds asking for the same new package at once all get it whole, and the cache holds one good copy', async () => {
    const answers = await Promise.all([1, 2, 3, 4].map(() => get(mirror.url(all.path))));
    for (const answer of answers) expect(answer.body.equals(all.indexed)).toBe(true);
    expect(readFileSync(join(dir, `127.0.0.1_${mirror.port}`, all.path)).equals(all.indexed)).toBe(true);
    expect(filesUnder(dir).filter((file) => file.includes('.part-'))).toEqual([]);
  });

  test("the guest's Host header neither reaches the mirror nor names what is kept: the next build gets the mirror's package", async () => {
    const asked = await get(mirror.url(poisoned.path), { host: 'evil.local' });
    expect(mirror.hits.filter((hit) => hit.url === poisoned.path).map((hit) => hit.host)).toEqual([`127.0.0.1:${mirror.port}`]);
    expect(asked.body.equals(poisoned.indexed)).toBe(true);
    const next = await get(mirror.url(poisoned.path));
    expect(next.cache).toBe('hit');
    expect(next.body.equals(poisoned.indexed)).toBe(true);
    expect(existsSync(join(dir, 'evil.local'))).toBe(false);
  });

  test('Release with a detached Release.gpg, and a Packages.xz fetched by its hash, vouch for packages too', async () => {
    const index = [...mirror.files.keys()].find((path) => path.startsWith('/debian/dists/detached/main/binary-amd64/by-hash/'))!;
    for (const path of ['/debian/dists/detached/Release', '/debian/dists/detached/Release.gpg', index]) expect((await get(mirror.url(path))).status).toBe(200);
    expect((await get(mirror.url(debootstrapped.path))).body.equals(debootstrapped.indexed)).toBe(true);
    const again = await get(mirror.url(debootstrapped.path));
    expect([again.cache, again.body.equals(debootstrapped.indexed)]).toEqual(['hit', true]);
  });

  test('a package that is not what its signed index says is passed on and not kept', async () => {
    const answer = await get(mirror.url(tampered.path));
    expect(answer.body.equals(tampered.served)).toBe(true); // apt in the guest refuses it, as it would without the cache
    expect(existsSync(cachePath(dir, new URL(mirror.url(tampered.path)))!)).toBe(false);
    expect((await get(mirror.url(tampered.path))).cache).toBeUndefined();
  });

  test('a body longer than its signed index says aborts the transfer and is not kept', async () => {
    const answer = await get(mirror.url(long.path));
    expect(answer.whole).toBe(false);
    expect(answer.body.length).toBeLessThan(long.served.length);
    expect(existsSync(cachePath(dir, new URL(mirror.url(long.path)))!)).toBe(false);
  });

  test('a package bigger than the size cap is passed on whole and not kept', async () => {
    const answer = await get(mirror.url(big.path));
    expect(answer.whole).toBe(true);
    expect(answer.body.equals(big.indexed)).toBe(true);
    expect(existsSync(cachePath(dir, new URL(mirror.url(big.path)))!)).toBe(false);
  });

  test('packages no signed index vouches for are passed on and not kept: unlisted, listed by an index signed with another key, off the mirrors', async () => {
    for (const { path, indexed } of [unlisted, badSigned, offMirror]) {
      const answer = await get(mirror.url(path));
      expect(answer.body.equals(indexed), path).toBe(true);
      expect((await get(mirror.url(path))).cache, path).toBeUndefined();
    }
    expect(filesUnder(dir).filter((file) => /unlisted|forged|other/.test(file))).toEqual([]);
  });

  test('a kept package that no longer matches its index (an older cache, poisoned) is not served: fetched again and replaced', async () => {
    const file = cachePath(dir, new URL(mirror.url(legacy.path)))!;
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    writeFileSync(file, randomBytes(30_000));
    const answer = await get(mirror.url(legacy.path));
    expect(answer.cache).toBeUndefined();
    expect(answer.body.equals(legacy.indexed)).toBe(true);
    expect(readFileSync(file).equals(legacy.indexed)).toBe(true);
  });

  test('indexes pass through: every request reaches the mirror and nothing is kept', async () => {
    const path = '/debian/dists/bookworm/InRelease';
    const before = mirror.hits.filter((hit) => hit.url === path).length;
    expect((await get(mirror.url(path))).body.toString()).toContain('BEGIN PGP SIGNED MESSAGE');
    expect(mirror.hits.filter((hit) => hit.url === path)).toHaveLength(before + 1);
    expect(filesUnder(dir).some((file) => file.includes('InRelease'))).toBe(false);
  });

  test('a package cut short reaches the guest incomplete and is not kept; a 404 is passed on and not kept', async () => {
    const answer = await get(mirror.url(cut.path));
    expect(answer.whole).toBe(false);
    const missing = await get(mirror.url('/debian/pool/main/m/missing/missing_1_amd64.deb'));
    expect(missing.status).toBe(404);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(filesUnder(dir).filter((file) => /cut|missing|\.part-/.test(file))).toEqual([]);
  });

  test('a URL that would climb out of the cache directory is passed through, never written', async () => {
    const before = filesUnder(dir);
    const answer = await get(mirror.url('/debian/..%2f..%2f..%2fescape.deb'));
    expect(answer.status).toBe(404);
    expect(filesUnder(dir)).toEqual(before);
    expect(existsSync(join(dir, '..', 'escape.deb'))).toBe(false);
  });

  test("the cache is the user's alone: directories 0700, files 0600", () => {
    const modes = [root, ...readdirSync(root, { recursive: true }).map((name) => join(root, name as string))].map((path) => {
      const stat = statSync(path);
      return `${stat.isDirectory() ? 'dir' : 'file'} ${(stat.mode & 0o777).toString(8)}`;
    });
    expect(modes.length).toBeGreaterThan(5);
    expect(new Set(modes)).toEqual(new Set(['dir 700', 'file 600']));
  });

  test("the host's other services are refused: a request for http://127.0.0.1:PORT, CONNECT to it, CONNECT to a port but 443", async () => {
    const asked = await get(`http://127.0.0.1:${service.port}/admin`);
    expect(asked.status).toBe(403);
    expect(asked.body.toString()).toBe(`boxbuild: 127.0.0.1:${service.port} is the host's loopback, which the guest's network does not reach; --network allow=127.0.0.1:${service.port} opens it\n`);
    expect(await connectVia(socket, `127.0.0.1:${service.port}`)).toMatch(new RegExp(`^HTTP/1.1 403 Forbidden\r\n[\\s\\S]*127\\.0\\.0\\.1:${service.port}`));
    expect(await connectVia(socket, `localhost:${service.port}`)).toMatch(/^HTTP\/1.1 403 Forbidden/);
    expect(await connectVia(socket, '[::ffff:127.0.0.1]:443')).toMatch(/^HTTP\/1.1 403 Forbidden\r\n[\s\S]*the host's loopback/);
    expect(await connectVia(socket, '203.0.113.1:25')).toMatch(/^HTTP\/1.1 403 Forbidden\r\n[\s\S]*tunnels \(CONNECT\) go to port 443 only/);
    expect((await get(`http://[::ffff:7f00:1]:${service.port}/`)).status).toBe(403);
    expect((await get(`http://169.254.169.254/latest/meta-data/`)).status).toBe(403);
    expect(service.reached).toEqual([]);
  });

  test('allow=HOST:PORT opens that one port: CONNECT tunnels to the mirror', async () => {
    const text = await connectVia(socket, `127.0.0.1:${mirror.port}`, 'GET /debian/dists/bookworm/InRelease HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(text).toMatch(/HTTP\/1\.1 200 OK[\s\S]*BEGIN PGP SIGNED MESSAGE/);
  });

  test('a guest holds at most 256 connections to the proxy (each costs two processes of the guest forward): more are closed at once', async () => {
    const sockets = Array.from({ length: 300 }, () => connect(socket).on('error', () => {}));
    let closed = 0;
    await new Promise<void>((resolve) => sockets.forEach((s) => s.once('close', () => ++closed === 300 - 256 && resolve())));
    expect(sockets.filter((s) => !s.destroyed).length).toBeLessThanOrEqual(256);
    for (const s of sockets) s.destroy();
  });
});

describe('the egress proxy for a host-side tool (making a box)', () => {
  test('on 127.0.0.1, only for a client with its token', async () => {
    const service = await hostService();
    const proxy = await startEgressProxy({ listen: { token: 'sesame' }, mode: 'full', allow: [] });
    try {
      const url = new URL(proxy.url!);
      const ask = (auth?: string) =>
        new Promise<number>((resolve, reject) => {
          const headers = auth ? { 'proxy-authorization': `Basic ${Buffer.from(auth).toString('base64')}` } : {};
          request({ host: url.hostname, port: url.port, path: `http://127.0.0.1:${service.port}/`, headers }, (res) => resolve(res.resume().statusCode!)).on('error', reject).end();
        });
      expect(await ask()).toBe(407);
      expect(await ask('boxbuild:guess')).toBe(407);
      expect(service.reached).toEqual([]);
      expect(await ask('boxbuild:sesame')).toBe(200);
    } finally {
      await proxy.close();
      service.server.close();
    }
  });
});

describe("a KIWI build's mirrors", () => {
  test("the description's repositories and --add-repo/--set-repo, plain HTTP ones", async () => {
    const description = tempDir();
    writeFileSync(
      join(description, 'config.xml'),
      `<image><repository type="apt-deb"><source path="http://mirror.example/debian"/></repository>
       <repository><source path='https://secure.example/debian'/></repository>
       <repository><source path="http://a.example/x?y=1&amp;z=2"/></repository>
       <repository><source path="obs://project/repo"/></repository></image>`,
    );
    chmodSync(description, 0o755);
    const words = ['system', 'build', '--add-repo', 'http://added.example/debian,apt-deb,a', '--set-repo=http://set.example/debian,apt-deb'];
    expect(await buildMirrors(description, words)).toEqual(['http://mirror.example/debian', 'http://a.example/x?y=1&z=2', 'http://added.example/debian', 'http://set.example/debian']);
  });
});
