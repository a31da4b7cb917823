import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Arch } from '../../src/box/arch.js';
import { type BoxManifest, freshWorkDir, installVersion, readInstalled } from '../../src/box/cache.js';
import { parseRegistry } from '../../src/box/registry.js';
import { type BoxRequest, ensureBox } from '../../src/box/resolve.js';
import { guestFilesDigest } from '../../src/guest/guest-files.js';
import { runCli } from '../helpers/cli.js';
import { type RegistryProxy, startRegistryProxy } from '../helpers/registry-proxy.js';
import { type TestRegistry, startRegistry } from '../helpers/registry.js';
import { freePort } from '../helpers/http.js';
import { tempDir } from '../helpers/temp.js';

/*
 * Boxes through a real OCI registry (Debian's docker-registry on 127.0.0.1, storage in the test's
 * directory), pushed with `box push` and pulled by a registry entry's "oci": small boxes made here
 * (no VM), and a proxy in front of the registry that counts requests and misbehaves on request.
 */

const FAST = { connectTimeoutMs: 2000, idleTimeoutMs: 800, retries: 2, minBackoffMs: 10, maxBackoffMs: 40, updateCheckTimeoutMs: 3000, smallFileTimeoutMs: 4000 };
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface FakeBox {
  kernel: Buffer;
  initrd: Buffer;
  system?: Buffer;
  sources?: Record<string, string>;
}

/** Installs a box of these files into a cache, as a download would. */
async function installFake(cache: string, name: string, arch: Arch, box: FakeBox): Promise<void> {
  const staging = await freshWorkDir(cache, name, arch, 'staging-');
  const files: Record<string, { name: string; sha256: string; size: number }> = {};
  for (const [role, data] of Object.entries({ kernel: box.kernel, initrd: box.initrd, system: box.system })) {
    if (!data) continue;
    const file = role === 'system' ? 'system.raw' : role;
    await writeFile(join(staging, file), data);
    files[role] = { name: file, sha256: sha256(data), size: data.length };
  }
  const manifest = { name, arch, version: `v-${sha256(box.initrd).slice(0, 6)}`, files, sources: box.sources ?? { fake: '1' } } as unknown as BoxManifest;
  await installVersion(cache, staging, manifest);
}

const fakeBox = (system = false): FakeBox => ({ kernel: randomBytes(300 << 10), initrd: randomBytes(200 << 10), system: system ? randomBytes(5 << 20) : undefined });

/** A registry entry of box `name` pulled from `ref`. */
function entry(name: string, ref: string, extra: Record<string, unknown> = {}) {
  return parseRegistry('test-boxes.json', JSON.stringify({ boxes: { [name]: { buildProgram: '/usr/lib/boxbuild/build', oci: ref, arches: { x86_64: {}, aarch64: {} }, ...extra } } }))[0]!;
}

const request = (cache: string, box: ReturnType<typeof entry>, overrides: Partial<BoxRequest> = {}): BoxRequest => ({ cacheRoot: cache, box, arch: 'x86_64', log: () => {}, net: FAST, ...overrides });

/** `box push` from a cache. */
async function push(cache: string, args: string[], env: Record<string, string> = {}) {
  return runCli(['box', 'push', ...args, '--part-size', '1M'], { env: { BOXBUILD_CACHE_DIR: cache, ...env } });
}

/** The files of a cache's current version, by name and sha256. */
function filesOf(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).filter((name) => name !== 'box.json').map((name) => [name, sha256(readFileSync(join(dir, name)))]));
}

/** Runs `task` with process.env replaced (registries.conf is read from the environment of the process). */
async function withEnv<T>(env: NodeJS.ProcessEnv, task: () => Promise<T>): Promise<T> {
  const saved = process.env;
  process.env = env;
  try {
    return await task();
  } finally {
    process.env = saved;
  }
}

const blobGets = (proxy: RegistryProxy) => proxy.requests.filter((request) => request.method === 'GET' && request.path.includes('/blobs/'));

let registry: TestRegistry;
let proxy: RegistryProxy;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startRegistryProxy(registry);
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
});

describe('box push, then a pull by the registry entry', () => {
  test('both architectures under one tag: pulled whole into a fresh cache, the disk in parts; the update check is one HEAD; box list names the source and digest', async () => {
    const publisher = tempDir();
    const boxes = { x86_64: fakeBox(true), aarch64: fakeBox() };
    await installFake(publisher, 'tbox', 'x86_64', boxes.x86_64);
    await installFake(publisher, 'tbox', 'aarch64', boxes.aarch64);
    const pushed = await push(publisher, ['tbox', `${registry.host}/team/tbox:1`]);
    expect(pushed.stderr).toMatch(/pushed box tbox \(aarch64, x86_64\): 11 blobs sent/); // 2 kernels, 2 initrds, 5 parts, 2 configs
    expect(pushed.stdout.trim()).toMatch(new RegExp(`^${registry.host.replaceAll('.', '\\.')}/team/tbox@sha256:[0-9a-f]{64}$`));
    expect(pushed.exitCode).toBe(0);

    const cache = tempDir();
    const box = entry('tbox', `${proxy.host}/team/tbox:1`);
    for (const arch of ['x86_64', 'aarch64'] as const) {
      const installed = await ensureBox(request(cache, box, { arch }));
      const expected = { kernel: sha256(boxes[arch].kernel), initrd: sha256(boxes[arch].initrd), ...(arch === 'x86_64' ? { 'system.raw': sha256(boxes.x86_64.system!) } : {}) };
      expect(filesOf(installed.dir)).toEqual(expected);
      expect(installed.manifest.oci).toMatchObject({ reference: `${proxy.host}/team/tbox:1`, digest: pushed.stdout.trim().split('@')[1] });
    }
    expect((await readInstalled(cache, 'tbox', 'x86_64'))!.manifest.oci!.parts).toHaveLength(5);

    proxy.requests.length = 0;
    await ensureBox(request(cache, box));
    expect(proxy.requests.map(({ method, path }) => `${method} ${path}`)).toEqual(['HEAD /v2/team/tbox/manifests/1']);

    const boxesFile = join(cache, 'boxes.json');
    writeFileSync(boxesFile, JSON.stringify({ boxes: { tbox: { buildProgram: '/b', oci: `${proxy.host}/team/tbox:1`, arches: { x86_64: {} } } } }));
    const list = await runCli(['box', 'list', '--boxes', boxesFile], { env: { BOXBUILD_CACHE_DIR: cache } });
    expect(list.stdout).toMatch(new RegExp(`tbox +x86_64 +${proxy.host.replaceAll('.', '\\.')}/team/tbox:1 +x86_64 +v-\\w+ \\(sha256:[0-9a-f]{12}\\) .* current`));
  });

  test('a new version downloads only what changed: one initrd and the disk parts that differ; pushing the same again sends nothing', async () => {
    const publisher = tempDir();
    const first = fakeBox(true);
    await installFake(publisher, 'ubox', 'x86_64', first);
    expect((await push(publisher, ['ubox', `${registry.host}/team/ubox:stable`])).exitCode).toBe(0);
    const cache = tempDir();
    const box = entry('ubox', `${proxy.host}/team/ubox:stable`);
    await ensureBox(request(cache, box));

    const system = Buffer.from(first.system!);
    randomBytes(1000).copy(system, (3 << 20) + 5); // in the fourth part
    await installFake(publisher, 'ubox', 'x86_64', { ...first, initrd: randomBytes(200 << 10), system });
    const again = await push(publisher, ['ubox', `${registry.host}/team/ubox:stable`]);
    expect(again.stderr).toMatch(/3 blobs sent .* 5 already there/); // the initrd, a part, the config; the kernel and 4 parts
    proxy.requests.length = 0;
    const updated = await ensureBox(request(cache, box));
    expect(filesOf(updated.dir)['system.raw']).toBe(sha256(system));
    expect(blobGets(proxy)).toHaveLength(3);
    expect((await push(publisher, ['ubox', `${registry.host}/team/ubox:stable`])).stderr).toMatch(/0 blobs sent .* 8 already there/);
  });

  test('the entry names another tag of the same box: nothing is downloaded again, and from then on the update check is one HEAD', async () => {
    const publisher = tempDir();
    await installFake(publisher, 'tagged', 'x86_64', fakeBox(true));
    for (const tag of ['a', 'b']) expect((await push(publisher, ['tagged', `${registry.host}/team/tagged:${tag}`])).exitCode).toBe(0);
    const cache = tempDir();
    await ensureBox(request(cache, entry('tagged', `${proxy.host}/team/tagged:a`)));
    const moved = entry('tagged', `${proxy.host}/team/tagged:b`);
    proxy.requests.length = 0;
    const installed = await ensureBox(request(cache, moved));
    expect(installed.manifest.oci!.reference).toBe(`${proxy.host}/team/tagged:b`);
    expect(blobGets(proxy).filter((request) => request.bytes > 4096)).toEqual([]);
    proxy.requests.length = 0;
    await ensureBox(request(cache, moved));
    expect(proxy.requests.map(({ method, path }) => `${method} ${path}`)).toEqual(['HEAD /v2/team/tagged/manifests/b']);
  });

  test('box push NAME:ARCH adds that architecture to the index the tag has; a pinned @sha256 reference is never asked about', async () => {
    const publisher = tempDir();
    await installFake(publisher, 'abox', 'x86_64', fakeBox());
    await installFake(publisher, 'abox', 'aarch64', fakeBox());
    expect((await push(publisher, ['abox:x86_64', `${registry.host}/team/abox:1`])).exitCode).toBe(0);
    const both = await push(publisher, ['abox:aarch64', `${registry.host}/team/abox:1`]);
    const digest = both.stdout.trim().split('@')[1]!;
    const index = JSON.parse(readFileSync(join(registry.storage, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data'), 'utf8')) as { manifests: { platform: { architecture: string } }[] };
    expect(index.manifests.map((manifest) => manifest.platform.architecture).sort()).toEqual(['amd64', 'arm64']);

    const cache = tempDir();
    const pinned = entry('abox', `${proxy.host}/team/abox@${digest}`);
    await ensureBox(request(cache, pinned));
    proxy.requests.length = 0;
    await ensureBox(request(cache, pinned, { arch: 'x86_64' }));
    expect(proxy.requests).toEqual([]);
  });
});

describe('mirrors, as registries.conf names them', () => {
  test('the mirror serves the pull while the registry is down; a digest-only mirror is not asked for a tag; the box keeps the reference the entry names', async () => {
    const publisher = tempDir();
    const files = fakeBox(true);
    await installFake(publisher, 'mbox', 'x86_64', files);
    expect((await push(publisher, ['mbox', `${registry.host}/cache/team/mbox:1`])).exitCode).toBe(0);
    const down = `127.0.0.1:${await freePort()}`; // the team's registry, unreachable
    const conf = join(publisher, 'registries.conf');
    const mirrored = (pull: string) => `[[registry]]\nlocation = "${down}"\n[[registry.mirror]]\nlocation = "${proxy.host}/cache"\npull-from-mirror = "${pull}"\n`;
    const cache = tempDir();
    const box = entry('mbox', `${down}/team/mbox:1`);

    writeFileSync(conf, mirrored('digest-only'));
    const env = { ...process.env, CONTAINERS_REGISTRIES_CONF: conf };
    await withEnv(env, () => expect(ensureBox(request(cache, box))).rejects.toMatchObject({ exitCode: 69, message: expect.stringContaining(`http://${down}/v2/team/mbox/manifests/1`) }));
    expect(proxy.requests.some((request) => request.path.includes('mbox'))).toBe(false);

    writeFileSync(conf, mirrored('all'));
    const installed = await withEnv(env, () => ensureBox(request(cache, box)));
    expect(filesOf(installed.dir)['system.raw']).toBe(sha256(files.system!));
    expect(installed.manifest.oci!.reference).toBe(`${down}/team/mbox:1`);
    proxy.requests.length = 0;
    await withEnv(env, () => ensureBox(request(cache, box))); // the update check asks the mirror too
    expect(proxy.requests.map(({ method, path }) => `${method} ${path}`)).toEqual(['HEAD /v2/cache/team/mbox/manifests/1']);
  });
});

describe('a pull that fails leaves the cache as it was: one line, exit 69', () => {
  /** Pushes a fresh box to registry/bad/NAME:1; returns the cache a pull goes to and a pull by the CLI through the proxy. */
  async function published(name: string, box = fakeBox(true)) {
    const publisher = tempDir();
    await installFake(publisher, name, 'x86_64', box);
    const result = await push(publisher, [name, `${registry.host}/bad/${name}:1`]);
    expect(result.exitCode, result.stderr).toBe(0);
    const cache = tempDir();
    const boxesFile = join(cache, 'boxes.json');
    writeFileSync(boxesFile, JSON.stringify({ boxes: { [name]: { buildProgram: '/b', oci: `${proxy.host}/bad/${name}:1`, arches: { x86_64: {} } } } }));
    const fetch = () => runCli(['box', 'fetch', name, '--arch', 'x86_64', '--boxes', boxesFile, '-q'], { env: { BOXBUILD_CACHE_DIR: cache } });
    return { cache, box, digest: result.stdout.trim().split('@')[1]!, fetch, entry: entry(name, `${proxy.host}/bad/${name}:1`) };
  }

  const expectNothingInstalled = (cache: string, name: string) => expect(existsSync(join(cache, 'boxes', name, 'x86_64', 'current'))).toBe(false);
  const oneLine = (stderr: string, pattern: RegExp) => {
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(pattern);
  };

  /** Replaces the tag's manifest (the x86_64 one, as the index names it) by what `change` makes of it. */
  async function republish(name: string, change: (manifest: { layers: { digest: string; size: number; mediaType: string }[] }) => void): Promise<number> {
    const base = `${registry.url}/v2/bad/${name}/manifests`;
    const accept = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';
    const index = (await (await fetch(`${base}/1`, { headers: { accept } })).json()) as { manifests: { digest: string }[] };
    const manifest = (await (await fetch(`${base}/${index.manifests[0]!.digest}`, { headers: { accept } })).json()) as Parameters<typeof change>[0];
    change(manifest);
    const put = await fetch(`${base}/1`, { method: 'PUT', headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: JSON.stringify(manifest) });
    return put.status;
  }

  test('a blob whose bytes are not its digest (changed in the registry\'s storage)', async () => {
    const { cache, box, fetch } = await published('corrupt');
    const stored = registry.blobFile(`sha256:${sha256(box.kernel)}`);
    const bytes = readFileSync(stored);
    bytes[1000] ^= 0xff;
    writeFileSync(stored, bytes);
    const result = await fetch();
    expect(result.exitCode).toBe(69);
    oneLine(result.stderr, /^boxbuild: error: cannot download kernel from http:\/\/127\.0\.0\.1:\d+\/v2\/bad\/corrupt\/blobs\/sha256:[0-9a-f]{64}: its sha256 is [0-9a-f]{64}, but [0-9a-f]{64} was expected/);
    expectNothingInstalled(cache, 'corrupt');
    expect(readdirSync(join(cache, 'tmp', 'corrupt', 'x86_64'))).toEqual([]); // the bad download is not kept for a resume
  });

  test('a manifest that names a blob twice', async () => {
    const { cache, fetch } = await published('twice');
    expect(await republish('twice', (manifest) => manifest.layers.push({ ...manifest.layers.at(-1)! }))).toBe(201);
    const result = await fetch();
    expect(result.exitCode).toBe(69);
    oneLine(result.stderr, /^boxbuild: error: box twice \(x86_64\) from 127\.0\.0\.1:\d+\/bad\/twice:1: the manifest is refused: it names blob sha256:[0-9a-f]{64} twice$/);
    expectNothingInstalled(cache, 'twice');
  });

  test('a manifest whose layer says it is larger than a box file may be', async () => {
    const { cache, fetch } = await published('huge');
    const status = await republish('huge', (manifest) => (manifest.layers[0]!.size = 2 ** 50));
    expect(status).toBe(201);
    const result = await fetch();
    expect(result.exitCode).toBe(69);
    oneLine(result.stderr, /^boxbuild: error: box huge \(x86_64\) from .*: the manifest is refused: layer 1 says it is 1125899906842624 bytes; the most it may be is \d+$/);
    expectNothingInstalled(cache, 'huge');
  });

  test('a system disk that names a host file as its backing file', async () => {
    const dir = tempDir();
    const disk = join(dir, 'evil.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/passwd', disk]);
    const { cache, fetch } = await published('backing', { ...fakeBox(), system: readFileSync(disk) });
    const result = await fetch();
    expect(result.exitCode).toBe(69);
    oneLine(result.stderr, /^boxbuild: error: box backing \(x86_64\) from .*: its system disk .*\/etc\/passwd/);
    expectNothingInstalled(cache, 'backing');
  });

  test('a box made by another boxbuild version (other guest files)', async () => {
    const { cache, fetch } = await published('other', { ...fakeBox(), sources: { 'boxbuild-guest': '0'.repeat(64) } });
    const result = await fetch();
    expect(result.exitCode).toBe(69);
    oneLine(result.stderr, new RegExp(`^boxbuild: error: box other \\(x86_64\\) from .*: it was made by another boxbuild version \\(its guest files are 0{19}…, this boxbuild's ${(await guestFilesDigest()).slice(0, 19)}…\\); publish it again`));
    expectNothingInstalled(cache, 'other');
  });

  test('an architecture the index does not have', async () => {
    const { cache, entry: box } = await published('onearch');
    await expect(ensureBox(request(cache, box, { arch: 'aarch64' }))).rejects.toMatchObject({ exitCode: 69, message: expect.stringMatching(/the index is refused: it has no box for aarch64 \(linux\/arm64\); it has: amd64$/) });
  });

  test.each([
    ['never answers', { stall: { path: /\/bad\/never\/manifests\// } }, /timed out \(no data for 0\.8 s\)$/],
    ['trickles its manifest', { slow: { path: /\/bad\/trickle\/manifests\//, bytesPerSecond: 20 } }, /did not arrive within 4 s, the longest a manifest may take$/],
  ] as const)('a registry that %s: given up on within the download limits', async (what, faults, said) => {
    const name = what === 'never answers' ? 'never' : 'trickle';
    const { cache, entry: box } = await published(name);
    Object.assign(proxy.faults, faults);
    try {
      const started = Date.now();
      const error = await ensureBox(request(cache, box)).catch((failure: unknown) => failure);
      expect(error).toMatchObject({ exitCode: 69 });
      expect((error as Error).message).toMatch(new RegExp(`^cannot download the manifest of 127\\.0\\.0\\.1:\\d+/bad/${name}:1 from http://.*/v2/bad/${name}/manifests/1: `));
      expect((error as Error).message).toMatch(said);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      proxy.faults.stall = undefined;
      proxy.faults.slow = undefined;
    }
    expectNothingInstalled(cache, name);
  });

  test('a registry that sends a blob too slowly: given up on, the cache unchanged', async () => {
    const { cache, entry: box } = await published('slow');
    proxy.faults.slow = { path: /\/bad\/slow\/blobs\//, bytesPerSecond: 2000 };
    try {
      await expect(ensureBox(request(cache, box, { net: { ...FAST, retries: 0, minRate: 50_000, slowWindowMs: 500 } }))).rejects.toMatchObject({ exitCode: 69, message: expect.stringMatching(/too slow/) });
    } finally {
      proxy.faults.slow = undefined;
    }
    expectNothingInstalled(cache, 'slow');
  });

  test('a pull cut in the middle of a disk part resumes there on the next try, with a Range request; the parts before are not asked for again', async () => {
    const { cache, box: files, entry: box } = await published('cut');
    const third = sha256(files.system!.subarray(2 << 20, 3 << 20));
    Object.assign(proxy.faults, { cutBlobAfter: 300_000, cutPath: new RegExp(third) });
    await expect(ensureBox(request(cache, box, { net: { ...FAST, retries: 0 } }))).rejects.toMatchObject({ exitCode: 69 });
    proxy.faults.cutPath = undefined;
    expectNothingInstalled(cache, 'cut');
    expect(readdirSync(join(cache, 'tmp', 'cut', 'x86_64'))).toEqual([`${sha256(files.system!)}.disk.part`]); // the kernel and initrd are installed with the box only
    proxy.requests.length = 0;
    const installed = await ensureBox(request(cache, box));
    expect(filesOf(installed.dir)['system.raw']).toBe(sha256(files.system!));
    const asked = (part: number) => blobGets(proxy).filter((request) => request.path.includes(sha256(files.system!.subarray(part << 20, (part + 1) << 20))));
    expect([0, 1, 2, 3, 4].map((part) => asked(part).map(({ range }) => range ?? 'whole'))).toEqual([[], [], ['bytes=300000-'], ['whole'], ['whole']]);
    expect(readdirSync(join(cache, 'tmp', 'cut', 'x86_64'))).toEqual([]);
  });
});

describe('a registry that wants a login (token auth)', () => {
  let secured: TestRegistry;
  beforeAll(async () => {
    secured = await startRegistry({ tokenAuth: true });
  }, 60_000);
  afterAll(() => secured?.stop());

  test('push and pull with the credentials of a podman/docker auth file; without them, one line saying so', async () => {
    const publisher = tempDir();
    await installFake(publisher, 'sbox', 'x86_64', fakeBox());
    const ref = `${secured.host}/private/sbox:1`;
    const anonymous = await push(publisher, ['sbox', ref], { REGISTRY_AUTH_FILE: join(publisher, 'none.json'), HOME: publisher });
    expect(anonymous.exitCode).toBe(69);
    expect(anonymous.stderr.trim()).toMatch(/^boxbuild: error: 127\.0\.0\.1:\d+\/private\/sbox: the token service refuses an anonymous login \(log in with "podman login" or "docker login"\) \(HTTP 401/);
    const withLogin = { REGISTRY_AUTH_FILE: secured.auth!.authFile, HOME: publisher };
    expect((await push(publisher, ['sbox', ref], withLogin)).exitCode).toBe(0);

    const cache = tempDir();
    const boxesFile = join(cache, 'boxes.json');
    writeFileSync(boxesFile, JSON.stringify({ boxes: { sbox: { buildProgram: '/b', oci: ref, arches: { x86_64: {} } } } }));
    const pull = (env: Record<string, string>) => runCli(['box', 'fetch', 'sbox', '--arch', 'x86_64', '--boxes', boxesFile, '-q'], { env: { BOXBUILD_CACHE_DIR: cache, HOME: cache, ...env } });
    const refused = await pull({ REGISTRY_AUTH_FILE: join(cache, 'none.json') });
    expect(refused.exitCode).toBe(69);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    const wrong = join(cache, 'wrong.json');
    writeFileSync(wrong, JSON.stringify({ auths: { [secured.host]: { auth: Buffer.from(`${secured.auth!.user}:nope`).toString('base64') } } }));
    expect((await pull({ REGISTRY_AUTH_FILE: wrong })).stderr).toMatch(new RegExp(`the token service refuses the credentials in ${wrong.replaceAll('/', '\\/')}`));
    const pulled = await pull(withLogin);
    expect(pulled.exitCode, pulled.stderr).toBe(0);
  });
});

describe('signed boxes', () => {
  const gnupg = tempDir();
  const gpg = async (args: string[]) => Buffer.from((await execa('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { env: { GNUPGHOME: gnupg }, encoding: 'buffer', stripFinalNewline: false })).stdout);
  const PUBLISHER = 'boxes@example.org';
  const SOMEONE_ELSE = 'someone@example.org';

  beforeAll(async () => {
    for (const user of [PUBLISHER, SOMEONE_ELSE]) await gpg(['--quick-gen-key', user, 'ed25519', 'sign', 'never']);
  }, 60_000);
  afterAll(() => execa('gpgconf', ['--kill', 'all'], { env: { GNUPGHOME: gnupg }, reject: false })); // the agent gpg started

  test('a pinned key requires the signature box push --sign made with it: a box signed by another key, or not at all, is refused', async () => {
    const publisher = tempDir();
    await installFake(publisher, 'gbox', 'x86_64', fakeBox());
    const env = { GNUPGHOME: gnupg };
    expect((await push(publisher, ['gbox', `${registry.host}/signed/gbox:good`, '--sign', PUBLISHER], env)).exitCode).toBe(0);
    await installFake(publisher, 'gbox', 'x86_64', fakeBox()); // each tag a box of its own: a signature belongs to a manifest
    expect((await push(publisher, ['gbox', `${registry.host}/signed/gbox:other`, '--sign', SOMEONE_ELSE], env)).exitCode).toBe(0);
    await installFake(publisher, 'gbox', 'x86_64', fakeBox());
    expect((await push(publisher, ['gbox', `${registry.host}/signed/gbox:unsigned`])).exitCode).toBe(0);
    const key = (await gpg(['--armor', '--export', PUBLISHER])).toString();
    const pull = (tag: string) => ensureBox(request(tempDir(), entry('gbox', `${registry.host}/signed/gbox:${tag}`, { openpgpKey: key })));
    await expect(pull('good')).resolves.toMatchObject({ manifest: { name: 'gbox' } });
    await expect(pull('other')).rejects.toMatchObject({ exitCode: 69, message: expect.stringMatching(/the OpenPGP signature does not verify with the registry's key/) });
    await expect(pull('unsigned')).rejects.toMatchObject({ exitCode: 69, message: expect.stringMatching(/pins an OpenPGP key, but sha256:[0-9a-f]{64} carries no signature/) });
  });
});
