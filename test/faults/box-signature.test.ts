import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { parseRegistry } from '../../src/box/registry.js';
import { runCli } from '../helpers/cli.js';
import { BoxServer } from '../box/server.js';
import { testDir } from './box-fakes.js';

const PUBLISHER = 'publisher@example.org';
const SOMEONE_ELSE = 'someone-else@example.org';

let server: BoxServer;
let gnupg: string;
let publisherKey: string;

/** gpg in the test's own GNUPGHOME, never the user's. */
async function gpg(args: string[], input?: Buffer): Promise<string> {
  const result = await execa('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { env: { GNUPGHOME: gnupg }, input });
  return result.stdout;
}

beforeAll(async () => {
  gnupg = mkdtempSync(join(tmpdir(), 'bb-faults-gnupg-'));
  for (const user of [PUBLISHER, SOMEONE_ELSE]) await gpg(['--quick-gen-key', user, 'ed25519', 'sign', 'never']);
  publisherKey = await gpg(['--armor', '--export', PUBLISHER]);
});

beforeEach(async () => {
  server = new BoxServer();
  await server.start();
});

afterEach(() => server.close());

afterAll(async () => {
  await execa('gpgconf', ['--kill', 'all'], { env: { GNUPGHOME: gnupg }, reject: false });
  rmSync(gnupg, { recursive: true, force: true });
});

function registryDoc(box: object = {}) {
  const sidecar = { sha256: 'sidecar', signature: 'sidecar' };
  const files = { kernel: { url: 'kernel', ...sidecar }, initrd: { url: 'initrd', ...sidecar } };
  return { boxes: { sbox: { buildProgram: '/b', mirrors: [server.url], openpgpKey: publisherKey, files, arches: { x86_64: {} }, ...box } } };
}

/** Publishes the box: each file, its sha256 sidecar and, unless `signer` is undefined, the sidecar's signature by `signer`. */
async function publish(signer: string | undefined, tamper = false): Promise<void> {
  for (const name of ['kernel', 'initrd']) {
    const data = server.publish(`/${name}`, randomBytes(8192));
    const sidecar = Buffer.from(`${createHash('sha256').update(data).digest('hex')}  ${name}\n`);
    if (signer) server.publish(`/${name}.sha256.asc`, await gpg(['--local-user', signer, '--armor', '--detach-sign', '--output', '-'], sidecar));
    server.publish(`/${name}.sha256`, tamper ? Buffer.from(`${'0'.repeat(64)}  ${name}\n`) : sidecar);
  }
}

async function fetchBox(): Promise<{ exitCode: number; stderr: string; cache: string }> {
  const dir = testDir('bb-faults-sig-');
  const registry = join(dir, 'boxes.json');
  writeFileSync(registry, JSON.stringify(registryDoc()));
  const cache = join(dir, 'cache');
  const result = await runCli(['box', 'fetch', 'sbox', '-q', '--boxes', registry], { env: { BOXBUILD_CACHE_DIR: cache }, timeout: 20_000 });
  return { ...result, cache };
}

const nothingInstalled = (cache: string) => {
  expect(existsSync(join(cache, 'boxes', 'sbox'))).toBe(false);
  expect(readdirSync(join(cache, 'tmp', 'sbox', 'x86_64'))).toEqual([]);
};

describe('OpenPGP signatures of checksum sidecars', () => {
  test('a sidecar signed with the pinned key passes', async () => {
    await publish(PUBLISHER);
    const { exitCode, stderr, cache } = await fetchBox();
    expect(stderr).toBe('');
    expect(exitCode).toBe(0);
    expect(existsSync(join(cache, 'boxes', 'sbox', 'x86_64', 'current', 'kernel'))).toBe(true);
  });

  test.each([
    ['signed with another key', SOMEONE_ELSE, false, /^boxbuild: error: kernel\.sha256: the OpenPGP signature does not verify with the registry's key \(gpgv: .+\)$/],
    ['changed after it was signed', PUBLISHER, true, /^boxbuild: error: kernel\.sha256: the OpenPGP signature does not verify with the registry's key \(gpgv: .+\)$/],
    ['not signed', undefined, false, /^boxbuild: error: kernel\.sha256: the registry requires an OpenPGP signature, but http:\/\/\S+\/kernel\.sha256\.asc answers HTTP 404 Not Found$/],
  ])('a sidecar %s is one line, exit 69, and nothing is installed', async (_, signer, tamper, message) => {
    await publish(signer, tamper);
    const { exitCode, stderr, cache } = await fetchBox();
    expect(stderr.trim()).toMatch(message);
    expect(exitCode).toBe(69);
    nothingInstalled(cache);
  });

  test('an endless signature is cut off at 64 KiB: one line, exit 69, nothing installed', { timeout: 30_000 }, async () => {
    await publish(PUBLISHER);
    server.endless.add('/kernel.sha256.asc');
    const { exitCode, stderr, cache } = await fetchBox();
    expect(stderr.trim()).toMatch(/^boxbuild: error: cannot download kernel from \S+: signature \S+\/kernel\.sha256\.asc is larger than 64\.0 KiB, the most a signature may be$/);
    expect(exitCode).toBe(69);
    expect(server.hitsOf('/kernel.sha256.asc')).toHaveLength(1);
    nothingInstalled(cache);
  });

  test.each([
    ['a key that is not an armored public key', { openpgpKey: 'not a key' }, /field "openpgpKey" must be an ASCII-armored OpenPGP public key block/],
    ['a signature without a key', { openpgpKey: undefined }, /field "files\.kernel\.signature" must be used with an "openpgpKey"/],
    ['a signature of a pinned file', { files: { kernel: { url: 'k', sha256: 'a'.repeat(64), signature: 'sidecar' }, initrd: { url: 'i', sha256: 'a'.repeat(64) } } }, /field "files\.kernel\.signature" must be used with "sha256": "sidecar"/],
  ])('the registry refuses %s', (_, box, message) => {
    expect(() => parseRegistry('r.json', JSON.stringify(registryDoc(box)))).toThrow(message);
  });
});
