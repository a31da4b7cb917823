import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { type RegistryProxy, startRegistryProxy } from '../helpers/registry-proxy.js';
import { type TestRegistry, startRegistry } from '../helpers/registry.js';

/*
 * The test registry itself (Debian's docker-registry, distribution 2.8), its token server and the
 * fault proxy in front of it, spoken to with plain fetch: what the OCI client's tests rely on.
 */

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const BOX_CONFIG = 'application/vnd.boxbuild.box.config.v1+json';
const BOX_KERNEL = 'application/vnd.boxbuild.box.kernel.v1';

type Headers = Record<string, string>;

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Pushes a blob as clients do: POST an upload, then PUT its bytes to the Location with the digest. */
async function pushBlob(base: string, repo: string, data: Buffer, headers: Headers = {}): Promise<{ digest: string; size: number }> {
  const started = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
  expect(started.status).toBe(202);
  const location = new URL(started.headers.get('location')!, base);
  location.searchParams.set('digest', digestOf(data));
  const put = await fetch(location, { method: 'PUT', body: data, headers: { ...headers, 'content-type': 'application/octet-stream' } });
  expect(put.status).toBe(201);
  return { digest: digestOf(data), size: data.length };
}

/** A box's manifest: a config blob and a kernel layer (or the layers given). */
function boxManifest(config: { digest: string; size: number }, layers: { digest: string; size: number }[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: BOX_CONFIG, ...config },
      layers: layers.map((layer) => ({ mediaType: BOX_KERNEL, ...layer })),
    }),
  );
}

function putManifest(base: string, repo: string, reference: string, body: Buffer, mediaType = OCI_MANIFEST, headers: Headers = {}): Promise<Response> {
  return fetch(`${base}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body, headers: { ...headers, 'content-type': mediaType } });
}

/** Pushes a config and a kernel of 4 KiB of random bytes and their manifest as `repo:reference`. */
async function pushBox(base: string, repo: string, reference: string, headers: Headers = {}) {
  const kernel = randomBytes(4096);
  const config = await pushBlob(base, repo, Buffer.from(JSON.stringify({ box: randomBytes(4).toString('hex') })), headers);
  const layer = await pushBlob(base, repo, kernel, headers);
  const manifest = boxManifest(config, [layer]);
  expect((await putManifest(base, repo, reference, manifest, OCI_MANIFEST, headers)).status).toBe(201);
  return { kernel, config, layer, manifest };
}

describe('the registry', () => {
  let registry: TestRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(() => registry?.stop());

  test("takes blobs, an OCI manifest with boxbuild's media types and an index, and serves them back", async () => {
    const { kernel, layer, manifest } = await pushBox(registry.url, 't/x', 'v1');
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: digestOf(manifest), size: manifest.length, platform: { architecture: 'amd64', os: 'linux' } }],
      }),
    );
    const putIndex = await putManifest(registry.url, 't/x', 'latest', index, OCI_INDEX);
    expect(putIndex.status).toBe(201);
    expect(putIndex.headers.get('docker-content-digest')).toBe(digestOf(index));

    const head = await fetch(`${registry.url}/v2/t/x/manifests/v1`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } });
    expect([head.status, head.headers.get('docker-content-digest'), head.headers.get('content-type')]).toEqual([200, digestOf(manifest), OCI_MANIFEST]);
    const gotIndex = await fetch(`${registry.url}/v2/t/x/manifests/latest`, { headers: { accept: `${OCI_INDEX}, ${OCI_MANIFEST}` } });
    expect([gotIndex.headers.get('content-type'), Buffer.from(await gotIndex.arrayBuffer())]).toEqual([OCI_INDEX, index]);
    const byDigest = await fetch(`${registry.url}/v2/t/x/manifests/${digestOf(manifest)}`, { headers: { accept: OCI_MANIFEST } });
    expect(Buffer.from(await byDigest.arrayBuffer())).toEqual(manifest);

    const blob = await fetch(`${registry.url}/v2/t/x/blobs/${layer.digest}`);
    expect(Buffer.from(await blob.arrayBuffer())).toEqual(kernel);
    const part = await fetch(`${registry.url}/v2/t/x/blobs/${layer.digest}`, { headers: { range: 'bytes=1000-' } });
    expect([part.status, part.headers.get('content-range')]).toEqual([206, `bytes 1000-4095/4096`]);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(kernel.subarray(1000));
    expect(await readFile(registry.blobFile(layer.digest))).toEqual(kernel);

    const logged = await registry.requests();
    expect(logged).toContainEqual({ method: 'PUT', path: '/v2/t/x/manifests/latest', status: 201 });
    expect(logged).toContainEqual({ method: 'GET', path: `/v2/t/x/blobs/${layer.digest}`, status: 206 });
  });

  test('answers a manifest only to a client that accepts its media type', async () => {
    await pushBox(registry.url, 't/accept', 'v1');
    const plain = await fetch(`${registry.url}/v2/t/accept/manifests/v1`);
    expect(plain.status).toBe(404);
    expect(await plain.json()).toMatchObject({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'OCI manifest found, but accept header does not support OCI manifests' }] });
  });

  test('takes manifests a pulling client must refuse (a blob named twice, a size that is not the blob’s) and serves them as they are', async () => {
    const { config, layer } = await pushBox(registry.url, 't/odd', 'v1');
    const twice = boxManifest(config, [layer, layer]);
    const huge = boxManifest(config, [{ ...layer, size: 2 ** 40 }]);
    expect((await putManifest(registry.url, 't/odd', 'twice', twice)).status).toBe(201);
    expect((await putManifest(registry.url, 't/odd', 'huge', huge)).status).toBe(201);
    const served = await fetch(`${registry.url}/v2/t/odd/manifests/huge`, { headers: { accept: OCI_MANIFEST } });
    expect(Buffer.from(await served.arrayBuffer())).toEqual(huge);
    // What it does check: every blob named is there.
    const missing = await putManifest(registry.url, 't/odd', 'missing', boxManifest(config, [{ digest: digestOf(Buffer.from('absent')), size: 6 }]));
    expect([missing.status, await missing.json()]).toMatchObject([400, { errors: [{ code: 'MANIFEST_BLOB_UNKNOWN' }] }]);
  });

  test('serves a blob whose stored bytes were corrupted as they now are, under its old digest', async () => {
    const { kernel, layer } = await pushBox(registry.url, 't/corrupt', 'v1');
    const corrupted = Buffer.from(kernel);
    corrupted[100] = ~corrupted[100]! & 0xff;
    await writeFile(registry.blobFile(layer.digest), corrupted);
    const blob = await fetch(`${registry.url}/v2/t/corrupt/blobs/${layer.digest}`);
    expect([blob.status, blob.headers.get('docker-content-digest')]).toEqual([200, layer.digest]);
    expect(Buffer.from(await blob.arrayBuffer())).toEqual(corrupted);
  });
});

/** The parameters of a Bearer challenge. */
function challenge(response: Response): Record<string, string> {
  const header = response.headers.get('www-authenticate') ?? '';
  expect(header).toMatch(/^Bearer /);
  return Object.fromEntries([...header.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1]!, match[2]!]));
}

describe('the registry with token auth', () => {
  let registry: TestRegistry;
  let basic: string;
  beforeAll(async () => {
    registry = await startRegistry({ tokenAuth: true });
    const authFile = JSON.parse(await readFile(registry.auth!.authFile, 'utf8'));
    basic = `Basic ${authFile.auths[registry.host].auth}`;
  });
  afterAll(() => registry?.stop());

  async function tokenFor(scope: string, authorization?: string): Promise<Response> {
    const anonymous = await fetch(`${registry.url}/v2/`);
    const { realm, service } = challenge(anonymous);
    const url = new URL(realm!);
    url.searchParams.set('service', service!);
    url.searchParams.append('scope', scope);
    return fetch(url, { headers: authorization ? { authorization } : {} });
  }

  async function bearer(scope: string): Promise<Headers> {
    const { token } = (await (await tokenFor(scope, basic)).json()) as { token: string };
    return { authorization: `Bearer ${token}` };
  }

  test('refuses anonymous requests with a challenge naming its token server, which wants the credentials', async () => {
    const root = await fetch(`${registry.url}/v2/`);
    expect(root.status).toBe(401);
    expect(challenge(root)).toEqual({ realm: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/token$/), service: 'boxbuild-test' });
    const pull = await fetch(`${registry.url}/v2/t/x/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
    expect([pull.status, challenge(pull).scope]).toEqual([401, 'repository:t/x:pull']);

    expect((await tokenFor('repository:t/x:pull')).status).toBe(401);
    const wrong = `Basic ${Buffer.from(`${registry.auth!.user}:not-the-password`).toString('base64')}`;
    expect((await tokenFor('repository:t/x:pull', wrong)).status).toBe(401);
    expect(registry.auth!.tokenRequests.slice(-2)).toEqual([
      { scopes: ['repository:t/x:pull'], credentials: false, status: 401 },
      { scopes: ['repository:t/x:pull'], credentials: true, status: 401 },
    ]);
  });

  test("with the auth file's credentials, a token lets one do what it grants, no more", async () => {
    const pushPull = await bearer('repository:t/x:pull,push');
    const { kernel, layer } = await pushBox(registry.url, 't/x', 'v1', pushPull);
    const blob = await fetch(`${registry.url}/v2/t/x/blobs/${layer.digest}`, { headers: pushPull });
    expect(Buffer.from(await blob.arrayBuffer())).toEqual(kernel);
    expect(registry.auth!.tokenRequests.at(-1)).toEqual({ scopes: ['repository:t/x:pull,push'], credentials: true, status: 200 });

    const pullOnly = await bearer('repository:t/x:pull');
    expect((await fetch(`${registry.url}/v2/t/x/blobs/${layer.digest}`, { headers: pullOnly })).status).toBe(200);
    expect((await fetch(`${registry.url}/v2/t/x/blobs/uploads/`, { method: 'POST', headers: pullOnly })).status).toBe(401);
    const otherRepo = await bearer('repository:t/other:pull');
    expect((await fetch(`${registry.url}/v2/t/x/blobs/${layer.digest}`, { headers: otherRepo })).status).toBe(401);
  });
});

describe('the fault proxy', () => {
  let registry: TestRegistry;
  let proxy: RegistryProxy;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(() => registry?.stop());
  beforeEach(async () => {
    proxy = await startRegistryProxy(registry);
  });
  afterEach(() => proxy.stop());

  test('passes pushes and pulls through, uploads staying on the proxy, and records every request', async () => {
    const { kernel, layer } = await pushBox(proxy.url, 't/proxied', 'v1');
    const blob = await fetch(`${proxy.url}/v2/t/proxied/blobs/${layer.digest}`);
    expect(Buffer.from(await blob.arrayBuffer())).toEqual(kernel);
    // The uploads' PUTs reached the proxy: their Location named it, not the registry.
    expect(proxy.requests.map(({ method, status }) => `${method} ${status}`)).toEqual(['POST 202', 'PUT 201', 'POST 202', 'PUT 201', 'PUT 201', 'GET 200']);
    expect(proxy.requests.at(-1)).toEqual({ method: 'GET', path: `/v2/t/proxied/blobs/${layer.digest}`, status: 200, bytes: kernel.length });
  });

  test('cuts the next blob GET after the bytes asked for, once', async () => {
    const { layer } = await pushBox(registry.url, 't/cut', 'v1');
    proxy.faults.cutBlobAfter = 1000;
    const cut = await fetch(`${proxy.url}/v2/t/cut/blobs/${layer.digest}`);
    expect(cut.status).toBe(200);
    await expect(cut.arrayBuffer()).rejects.toThrow();
    expect(proxy.requests.at(-1)).toMatchObject({ status: 200, bytes: 1000 });
    expect(proxy.faults.cutBlobAfter).toBeUndefined();
    const whole = await fetch(`${proxy.url}/v2/t/cut/blobs/${layer.digest}`);
    expect((await whole.arrayBuffer()).byteLength).toBe(layer.size);
  });

  // A stall is seen as nothing arriving for a while: these wait half a second for what never comes.
  test('leaves stalled requests unanswered, or stalls after some bytes', async () => {
    const { layer } = await pushBox(registry.url, 't/stall', 'v1');
    proxy.faults.stall = { path: /\/manifests\// };
    const unanswered = fetch(`${proxy.url}/v2/t/stall/manifests/v1`, { headers: { accept: OCI_MANIFEST }, signal: AbortSignal.timeout(500) });
    await expect(unanswered).rejects.toThrow(/aborted due to timeout/);
    expect(proxy.requests.at(-1)).toMatchObject({ status: 0, bytes: 0 });

    proxy.faults.stall = { path: /\/blobs\//, afterBytes: 10 };
    const started = await fetch(`${proxy.url}/v2/t/stall/blobs/${layer.digest}`, { signal: AbortSignal.timeout(500) });
    expect(started.status).toBe(200);
    await expect(started.arrayBuffer()).rejects.toThrow(/aborted due to timeout/);
    expect(proxy.requests.at(-1)).toMatchObject({ status: 200, bytes: 10 });
  });

  test('sends slowly at the rate asked for', async () => {
    const { kernel, layer } = await pushBox(registry.url, 't/slow', 'v1');
    proxy.faults.slow = { path: /\/blobs\//, bytesPerSecond: 8192 };
    const began = Date.now();
    const blob = await fetch(`${proxy.url}/v2/t/slow/blobs/${layer.digest}`);
    expect(Buffer.from(await blob.arrayBuffer())).toEqual(kernel);
    expect(Date.now() - began).toBeGreaterThanOrEqual(450); // 4096 bytes at 8 KiB/s
  });
});
