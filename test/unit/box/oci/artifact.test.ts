import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import type { Arch } from '../../../../src/box/arch.js';
import type { BoxFiles, BoxManifest } from '../../../../src/box/cache.js';
import {
  type Descriptor,
  MAX_CONFIG_BYTES,
  MAX_LAYERS,
  MEDIA_TYPES,
  boxConfig,
  boxManifestBytes,
  indexBytes,
  isIndex,
  manifestOf,
  otherArchEntries,
  readBoxConfig,
  readBoxManifest,
  readSignatureManifest,
  signatureManifestBytes,
  signatureTag,
} from '../../../../src/box/oci/artifact.js';

/*
 * A box's OCI artifact as a hostile registry could serve it: every refusal readBoxManifest,
 * readBoxConfig, manifestOf and readSignatureManifest make, on manifests built by the functions
 * push uses, then altered.
 */

type Json = Record<string, any>;

const hex = (content: string) => createHash('sha256').update(content).digest('hex');
const blob = (content: string, mediaType = ''): Descriptor => ({ mediaType, digest: `sha256:${hex(content)}`, size: Buffer.byteLength(content) });
const file = (name: string, content: string) => ({ name, sha256: hex(content), size: Buffer.byteLength(content) });
/** A digest of no content in particular, for descriptors that are never fetched. */
const fakeDigest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

const PARTS = ['system part one ', 'system part two'];
const MAX = 1 << 20;

/** A published box of `arch`: its box.json, its config and manifest bytes, as push makes them. */
function box(arch: Arch = 'x86_64') {
  const files: BoxFiles = {
    kernel: file('vmlinuz', `kernel ${arch}`),
    initrd: file('initrd.img', `initrd ${arch}`),
    packages: file('packages.txt', `packages ${arch}`),
    system: file('system.qcow2', PARTS.join('')),
  };
  const manifest: BoxManifest = { name: 'b', arch, version: '1.0', files, sources: { kernel: 'linux 6.1', 'boxbuild-guest': 'sha256:g' } };
  const config = boxConfig(manifest);
  const blobs = { kernel: blob(`kernel ${arch}`), initrd: blob(`initrd ${arch}`), packages: blob(`packages ${arch}`) };
  const bytes = boxManifestBytes(blob(config.toString()), files, blobs, PARTS.map((part) => blob(part)), arch);
  return { manifest, config, bytes };
}

const json = (bytes: Buffer): Json => JSON.parse(bytes.toString('utf8'));
const bytesOf = (value: unknown) => Buffer.from(JSON.stringify(value));
/** The manifest bytes of `box()`, altered by `change`. */
function altered(change: (doc: Json) => void, bytes = box().bytes): Buffer {
  const doc = json(bytes);
  change(doc);
  return bytesOf(doc);
}

const refusal = (read: () => unknown) => {
  try {
    read();
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return (error as Error).message;
  }
  return 'accepted';
};
const manifestRefusal = (change: (doc: Json) => void, maxBytes = MAX) => refusal(() => readBoxManifest(altered(change), maxBytes));

/** A message is one line fit for a terminal: no control characters, nothing long a registry chose. */
function expectOneShortLine(message: string): void {
  expect(message).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
  expect(message.length).toBeLessThan(600);
}

const HOSTILE = `\x1b]0;owned\x07\x1b[2J\n${'x'.repeat(100_000)}`;

describe('readBoxManifest', () => {
  test('a manifest push makes reads back: the config, the whole files, the parts in order', () => {
    const { bytes, config } = box();
    const doc = json(bytes);
    expect(doc).toMatchObject({ schemaVersion: 2, mediaType: MEDIA_TYPES.manifest, artifactType: 'application/vnd.boxbuild.box.v1', annotations: { 'org.boxbuild.arch': 'x86_64' } });
    expect(doc.layers.map((layer: Json) => layer.annotations?.['org.opencontainers.image.title'])).toEqual(['vmlinuz', 'initrd.img', 'packages.txt', undefined, undefined]);
    const layout = readBoxManifest(bytes, MAX);
    expect(layout.config).toEqual(blob(config.toString(), MEDIA_TYPES.config));
    expect(layout.files.kernel).toMatchObject(blob('kernel x86_64', 'application/vnd.boxbuild.box.kernel.v1'));
    expect(layout.files.initrd).toMatchObject(blob('initrd x86_64', 'application/vnd.boxbuild.box.initrd.v1'));
    expect(layout.files.packages).toMatchObject(blob('packages x86_64', 'application/vnd.boxbuild.box.packages.v1'));
    expect(layout.systemParts).toEqual(PARTS.map((part) => blob(part, MEDIA_TYPES.systemPart)));
  });

  test('a box without packages or system disk; a manifest without its own mediaType', () => {
    const layout = readBoxManifest(
      altered((doc) => {
        doc.layers = doc.layers.slice(0, 2);
        delete doc.mediaType;
      }),
      MAX,
    );
    expect(layout.files.packages).toBeUndefined();
    expect(layout.systemParts).toEqual([]);
  });

  test('a blob named twice is refused: two parts, a part that is the kernel, the config as a layer', () => {
    expect(manifestRefusal((doc) => doc.layers.push({ ...doc.layers[3] }))).toBe(`it names blob ${blob(PARTS[0]!).digest} twice`);
    expect(manifestRefusal((doc) => (doc.layers[4].digest = doc.layers[0].digest))).toContain('twice');
    expect(manifestRefusal((doc) => doc.layers.push({ ...doc.config, mediaType: MEDIA_TYPES.systemPart }))).toBe(`it names blob ${blob(box().config.toString()).digest} twice`);
    expect(manifestRefusal((doc) => doc.layers.push({ ...doc.config, mediaType: 'application/vnd.boxbuild.box.kernel.v1' }))).toContain('twice');
    expect(manifestRefusal((doc) => doc.layers.push({ ...doc.layers[0], digest: fakeDigest(1) }))).toBe('it has two kernel layers');
  });

  test('more layers than a box has', () => {
    const parts = (count: number) => (doc: Json) => {
      doc.layers = [...doc.layers.slice(0, 2), ...Array.from({ length: count }, (_, n) => ({ mediaType: MEDIA_TYPES.systemPart, digest: fakeDigest(n + 1), size: 1 }))];
    };
    expect(readBoxManifest(altered(parts(MAX_LAYERS - 2)), MAX).systemParts).toHaveLength(MAX_LAYERS - 2);
    expect(manifestRefusal(parts(MAX_LAYERS - 1))).toBe(`it has ${MAX_LAYERS + 1} layers; a box has at most ${MAX_LAYERS}`);
    expect(manifestRefusal((doc) => (doc.layers = { 0: doc.layers[0] }))).toBe(`it has no list of layers; a box has at most ${MAX_LAYERS}`);
    expect(manifestRefusal((doc) => delete doc.layers)).toContain('no list of layers');
  });

  test('a layer larger than the limit, or parts that add up to more', () => {
    const size = (layer: number, bytes: number) => (doc: Json) => (doc.layers[layer].size = bytes);
    expect(refusal(() => readBoxManifest(altered(size(0, 101)), 100))).toBe('layer 1 says it is 101 bytes; the most it may be is 100');
    expect(readBoxManifest(altered(size(0, 100)), 100).files.kernel!.size).toBe(100);
    expect(refusal(() => readBoxManifest(altered(size(4, 101)), 100))).toBe('layer 5 says it is 101 bytes; the most it may be is 100');
    expect(readBoxManifest(altered((doc) => ((doc.layers[3].size = 60), (doc.layers[4].size = 40))), 100).systemParts).toHaveLength(2);
    expect(refusal(() => readBoxManifest(altered((doc) => ((doc.layers[3].size = 60), (doc.layers[4].size = 41))), 100))).toBe('its system disk parts add up to more than 100 bytes, the limit for one file');
    expect(manifestRefusal((doc) => (doc.config.size = MAX_CONFIG_BYTES + 1))).toBe(`its config says it is ${MAX_CONFIG_BYTES + 1} bytes; the most it may be is ${MAX_CONFIG_BYTES}`);
  });

  test.each<[string, (doc: Json) => void, string]>([
    ['a layer of an unknown kind', (doc) => (doc.layers[2].mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip'), 'layer 3 is "application/vnd.oci.image.layer.v1.tar+gzip", which is no part of a box'],
    ['a config of another kind', (doc) => (doc.config.mediaType = 'application/vnd.oci.image.config.v1+json'), 'its config is "application/vnd.oci.image.config.v1+json", not a boxbuild box (application/vnd.boxbuild.box.config.v1+json)'],
    ['no config', (doc) => delete doc.config, 'its config is not a descriptor (mediaType, digest, size)'],
    ['no kernel', (doc) => doc.layers.splice(0, 1), 'it has no kernel or no initrd layer'],
    ['no initrd', (doc) => doc.layers.splice(1, 1), 'it has no kernel or no initrd layer'],
    ['schema version 1', (doc) => (doc.schemaVersion = 1), 'it is not an OCI image manifest'],
    ['an index', (doc) => (doc.mediaType = MEDIA_TYPES.index), 'it is not an OCI image manifest'],
    ['a digest of other hex', (doc) => (doc.layers[0].digest = `sha256:${'AB'.repeat(32)}`), `layer 1 has digest "sha256:${'AB'.repeat(32)}", not a sha256 digest`],
    ['a sha512 digest', (doc) => (doc.layers[1].digest = `sha512:${'ab'.repeat(64)}`), 'layer 2 has digest "sha512:'],
    ['a digest with a path', (doc) => (doc.layers[1].digest = `sha256:${'ab'.repeat(32)}/../x`), 'not a sha256 digest'],
    ['a digest that is no string', (doc) => (doc.layers[1].digest = 5), 'layer 2 is not a descriptor'],
    ['a negative size', (doc) => (doc.layers[0].size = -1), 'layer 1 says it is -1 bytes'],
    ['a fractional size', (doc) => (doc.layers[0].size = 1.5), 'layer 1 is not a descriptor'],
    ['a size as text', (doc) => (doc.layers[0].size = '5'), 'layer 1 is not a descriptor'],
    ['a size beyond 2^53', (doc) => (doc.layers[3].size = 2 ** 53), 'layer 4 is not a descriptor'],
    ['a layer that is no object', (doc) => (doc.layers[2] = 'sha256:x'), 'layer 3 is not a descriptor'],
    ['a layer without mediaType', (doc) => delete doc.layers[2].mediaType, 'layer 3 is not a descriptor'],
  ])('refuses %s', (_, change, why) => {
    expect(manifestRefusal(change)).toContain(why);
  });

  test.each(['', 'not json', '[]', 'null', '"manifest"', '3', '{"schemaVersion": 2'])('refuses %j', (text) => {
    expect(refusal(() => readBoxManifest(Buffer.from(text), MAX))).toMatch(/^the manifest is not (JSON|a JSON object)|^it is not an OCI image manifest/);
  });

  test('what a registry chose is shown on one short line, its control characters escaped', () => {
    for (const change of [
      (doc: Json) => (doc.layers[2].mediaType = HOSTILE),
      (doc: Json) => (doc.config.mediaType = HOSTILE),
      (doc: Json) => (doc.layers[0].digest = HOSTILE),
    ]) {
      const message = manifestRefusal(change);
      expect(message).toContain('\\x1b]0;owned\\x07');
      expectOneShortLine(message);
    }
  });
});

/** The manifest's layout with its config `change`d. */
function configRefusal(change: (config: Json) => void, arch: Arch = 'x86_64', bytes = box().bytes) {
  const config = json(box().config);
  change(config);
  return refusal(() => readBoxConfig(bytesOf(config), readBoxManifest(bytes, MAX), arch));
}

describe('readBoxConfig', () => {
  test('the config push publishes reads back against its layers', () => {
    const { manifest, config, bytes } = box();
    expect(json(config)).toEqual({ name: 'b', arch: 'x86_64', version: '1.0', files: manifest.files, sources: manifest.sources });
    expect(readBoxConfig(config, readBoxManifest(bytes, MAX), 'x86_64')).toEqual({ version: '1.0', files: manifest.files, sources: manifest.sources });
  });

  test('boxConfig leaves out what only this cache knows', () => {
    const { manifest } = box();
    const cached: BoxManifest = { ...manifest, downloads: {}, probes: [], oci: { reference: 'r.example/b:1', digest: fakeDigest(1), manifest: fakeDigest(2) } };
    expect(Object.keys(json(boxConfig(cached)))).toEqual(['name', 'arch', 'version', 'files', 'sources']);
  });

  test('every file is its layer: same digest, same size, present in both or in neither', () => {
    expect(configRefusal((config) => (config.files.kernel.sha256 = hex('other')))).toBe("its config's kernel is not its kernel layer");
    expect(configRefusal((config) => (config.files.initrd.size += 1))).toBe("its config's initrd is not its initrd layer");
    expect(configRefusal((config) => (config.files.kernel = config.files.initrd))).toContain('not a file name of its own');
    expect(configRefusal((config) => delete config.files.packages)).toBe('its config and its layers disagree on whether there is a packages');
    const noPackages = altered((doc) => doc.layers.splice(2, 1));
    expect(configRefusal(() => undefined, 'x86_64', noPackages)).toBe('its config and its layers disagree on whether there is a packages');
  });

  test('the system disk is what its parts add up to', () => {
    expect(configRefusal((config) => (config.files.system.size += 1))).toBe("its config's system disk is not what its parts add up to");
    expect(configRefusal((config) => (config.files.system.size -= 1))).toBe("its config's system disk is not what its parts add up to");
    expect(configRefusal((config) => delete config.files.system)).toBe("its config's system disk is not what its parts add up to");
    const noParts = altered((doc) => doc.layers.splice(3, 2));
    expect(configRefusal(() => undefined, 'x86_64', noParts)).toBe("its config's system disk is not what its parts add up to");
    const { manifest } = box();
    const withoutSystem = { ...manifest, files: { ...manifest.files, system: undefined } };
    expect(readBoxConfig(boxConfig(withoutSystem), readBoxManifest(noParts, MAX), 'x86_64').files.system).toBeUndefined();
  });

  test.each(['../x', '..', '.', '.hidden', 'a/b', '/etc/passwd', '', 'box.json', 'x y', 'a\\b', '-rf'])('a file named %j is refused', (name) => {
    expect(configRefusal((config) => (config.files.packages.name = name))).toBe(`its config names the packages "${name}", not a file name of its own`);
  });

  test('two files of one name are refused', () => {
    expect(configRefusal((config) => (config.files.system.name = 'vmlinuz'))).toBe('its config names the system "vmlinuz", not a file name of its own');
  });

  test('a file name a registry chose is shown on one short line', () => {
    const message = configRefusal((config) => (config.files.packages.name = HOSTILE));
    expect(message).toContain('its config names the packages "\\x1b]0;owned');
    expectOneShortLine(message);
  });

  test('a box of another architecture is refused', () => {
    expect(configRefusal((config) => (config.arch = 'aarch64'))).toBe('its config is of a aarch64 box, not x86_64');
    expect(configRefusal(() => undefined, 'aarch64')).toBe('its config is of a x86_64 box, not aarch64');
    expect(configRefusal((config) => (config.arch = 'sparc'))).toBe('its config is not a box manifest');
  });

  test.each<[string, (config: Json) => void]>([
    ['no version', (config) => delete config.version],
    ['no name', (config) => delete config.name],
    ['no kernel', (config) => delete config.files.kernel],
    ['a kernel without size', (config) => delete config.files.kernel.size],
    ['a kernel with a digest in capitals', (config) => (config.files.kernel.sha256 = config.files.kernel.sha256.toUpperCase())],
    ['a system that is no file', (config) => (config.files.system = 'system.qcow2')],
    ['sources that are not text', (config) => (config.sources = { a: 1 })],
    ['files that are a list', (config) => (config.files = [config.files.kernel, config.files.initrd])],
  ])('a config with %s is not a box manifest', (_, change) => {
    expect(configRefusal(change)).toBe('its config is not a box manifest');
  });

  test('a file of no known kind is refused, whatever it is', () => {
    for (const extra of [file('extra.bin', 'x'), null, 3, 'extra.bin', { name: 5 }, { name: '../x' }]) {
      expect(configRefusal((config) => (config.files.extra = extra)), JSON.stringify(extra)).toBe('its config names a file of no known kind');
    }
  });

  test.each(['', '{', '[]', 'null'])('refuses the config %j', (text) => {
    expect(refusal(() => readBoxConfig(Buffer.from(text), readBoxManifest(box().bytes, MAX), 'x86_64'))).toMatch(/^the config is not (JSON|a JSON object)|^its config is not a box manifest/);
  });
});

/** An index of a manifest per arch, as push makes it. */
const indexOf = (...arches: Arch[]) => indexBytes(arches.map((arch, n) => ({ arch, manifest: blob(`manifest ${arch} ${n}`, MEDIA_TYPES.manifest) })));
const indexRefusal = (change: (doc: Json) => void, arch: Arch = 'x86_64') => refusal(() => manifestOf(altered(change, indexOf('x86_64', 'aarch64')), arch));

describe('manifestOf and isIndex', () => {
  test('the entry of the architecture, by its OCI name', () => {
    const index = indexOf('x86_64', 'aarch64', 's390x');
    expect(json(index)).toMatchObject({ schemaVersion: 2, mediaType: MEDIA_TYPES.index, artifactType: 'application/vnd.boxbuild.box.v1' });
    expect(manifestOf(index, 'x86_64')).toMatchObject({ ...blob('manifest x86_64 0', MEDIA_TYPES.manifest), platform: { architecture: 'amd64', os: 'linux' } });
    expect(manifestOf(index, 'aarch64')).toMatchObject({ digest: blob('manifest aarch64 1').digest, platform: { architecture: 'arm64', os: 'linux' } });
    expect(manifestOf(index, 's390x').digest).toBe(blob('manifest s390x 2').digest);
  });

  test('isIndex tells an index from a manifest by its mediaType', () => {
    expect(isIndex(indexOf('x86_64'))).toBe(true);
    expect(isIndex(box().bytes)).toBe(false);
    expect(isIndex(Buffer.from('{}'))).toBe(false);
    expect(refusal(() => isIndex(Buffer.from('<html>')))).toMatch(/^the manifest is not JSON/);
    expect(refusal(() => isIndex(Buffer.from('[]')))).toBe('the manifest is not a JSON object');
  });

  test('an index without the architecture says which it has', () => {
    expect(refusal(() => manifestOf(indexOf('x86_64', 'aarch64'), 'ppc64le'))).toBe('it has no box for ppc64le (linux/ppc64le); it has: amd64, arm64');
    expect(refusal(() => manifestOf(indexOf(), 'x86_64'))).toBe('it has no box for x86_64 (linux/amd64); it has: nothing for any platform');
    // entries that are not linux, or not image manifests, are no box
    expect(indexRefusal((doc) => (doc.manifests[0].platform.os = 'windows'))).toBe('it has no box for x86_64 (linux/amd64); it has: amd64, arm64');
    expect(indexRefusal((doc) => (doc.manifests[0].mediaType = MEDIA_TYPES.index))).toContain('it has no box for x86_64');
    expect(indexRefusal((doc) => delete doc.manifests[0].platform)).toBe('it has no box for x86_64 (linux/amd64); it has: arm64');
    expect(indexRefusal((doc) => (doc.manifests[0].platform = null))).toBe('it has no box for x86_64 (linux/amd64); it has: arm64');
    expect(indexRefusal((doc) => (doc.manifests[0].platform = 'linux/amd64'))).toBe('it has no box for x86_64 (linux/amd64); it has: arm64');
  });

  test('the architectures an index has are shown on one short line', () => {
    const message = indexRefusal((doc) => {
      doc.manifests = Array.from({ length: 1000 }, (_, n) => ({ ...doc.manifests[1], digest: fakeDigest(n), platform: { architecture: `${HOSTILE.slice(0, 1000)}${n}`, os: 'linux' } }));
      doc.manifests.push({ ...doc.manifests[0], digest: fakeDigest(1001), platform: { architecture: { toString: 'x' }, os: 'linux' } });
    });
    expect(message).toMatch(/^it has no box for x86_64 \(linux\/amd64\); it has: \\x1b\]0;owned/);
    expectOneShortLine(message);
  });

  test('two entries for one architecture are refused', () => {
    expect(indexRefusal((doc) => doc.manifests.push({ ...doc.manifests[0], digest: fakeDigest(1) }))).toBe('it names 2 manifests for linux/amd64');
    const twoAmd64 = altered((doc) => doc.manifests.push({ ...doc.manifests[0], digest: fakeDigest(1) }), indexOf('x86_64', 'aarch64'));
    expect(manifestOf(twoAmd64, 'aarch64').digest).toBe(blob('manifest aarch64 1').digest);
  });

  test.each<[string, (doc: Json) => void, string]>([
    ['schema version 1', (doc) => (doc.schemaVersion = 1), 'the index is not an OCI image index'],
    ['no manifests', (doc) => delete doc.manifests, 'the index is not an OCI image index'],
    ['too many manifests', (doc) => (doc.manifests = Array.from({ length: MAX_LAYERS + 1 }, () => doc.manifests[0])), 'the index is not an OCI image index'],
    ['an entry with a bad digest', (doc) => (doc.manifests[1].digest = 'sha256:../../x'), 'index entry 2 has digest "sha256:../../x", not a sha256 digest'],
    ['an entry too large', (doc) => (doc.manifests[0].size = (4 << 20) + 1), `index entry 1 says it is ${(4 << 20) + 1} bytes`],
  ])('refuses an index with %s', (_, change, why) => {
    expect(indexRefusal(change)).toContain(why);
  });
});

describe('otherArchEntries', () => {
  test('keeps the other architectures and drops those pushed anew', () => {
    const index = indexOf('x86_64', 'aarch64', 's390x');
    const kept = otherArchEntries(index, ['x86_64', 'ppc64le']);
    expect(kept.map(({ arch, manifest }) => [arch, manifest.digest])).toEqual([
      ['aarch64', blob('manifest aarch64 1').digest],
      ['s390x', blob('manifest s390x 2').digest],
    ]);
    expect(otherArchEntries(index, ['x86_64', 'aarch64', 's390x'])).toEqual([]);
    expect(otherArchEntries(index, []).map(({ arch }) => arch)).toEqual(['x86_64', 'aarch64', 's390x']);
    // the new index: the kept entries and the pushed one, each found by its architecture
    const pushed = blob('manifest x86_64 new', MEDIA_TYPES.manifest);
    const next = indexBytes([...kept, { arch: 'x86_64', manifest: pushed }]);
    expect(manifestOf(next, 'x86_64').digest).toBe(pushed.digest);
    expect(manifestOf(next, 'aarch64').digest).toBe(blob('manifest aarch64 1').digest);
  });

  test('drops entries of architectures boxbuild does not know, and entries that are not image manifests', () => {
    const index = altered((doc) => {
      doc.manifests[0].platform.architecture = 'mips64le';
      doc.manifests[2].mediaType = 'application/vnd.oci.image.index.v1+json';
    }, indexOf('x86_64', 'aarch64', 's390x'));
    expect(otherArchEntries(index, []).map(({ arch }) => arch)).toEqual(['aarch64']);
    expect(otherArchEntries(Buffer.from('{"schemaVersion": 2}'), [])).toEqual([]);
  });
});

describe('signature manifests', () => {
  const subject = blob('the box manifest', MEDIA_TYPES.manifest);
  const signature = blob('-----BEGIN PGP SIGNATURE-----', MEDIA_TYPES.signature);
  const bytes = () => signatureManifestBytes(signature, subject, blob('{}'));
  const signatureRefusal = (change: (doc: Json) => void, about = subject.digest) => refusal(() => readSignatureManifest(altered(change, bytes()), about));

  test('the signature manifest push makes reads back', () => {
    expect(json(bytes())).toMatchObject({ artifactType: 'application/vnd.boxbuild.box.signature.v1', config: { mediaType: 'application/vnd.oci.empty.v1+json' }, subject: { digest: subject.digest, size: subject.size } });
    expect(readSignatureManifest(bytes(), subject.digest)).toEqual(signature);
    expect(signatureTag(subject.digest)).toBe(`sha256-${subject.digest.slice(7)}.sig`);
  });

  test.each<[string, (doc: Json) => void, string]>([
    ['two layers', (doc) => doc.layers.push({ ...doc.layers[0], digest: fakeDigest(1) }), 'the signature manifest does not carry one OpenPGP signature'],
    ['no layers', (doc) => (doc.layers = []), 'the signature manifest does not carry one OpenPGP signature'],
    ['layers that are no list', (doc) => (doc.layers = doc.layers[0]), 'the signature manifest does not carry one OpenPGP signature'],
    ['a layer of another kind', (doc) => (doc.layers[0].mediaType = 'application/vnd.dev.cosign.simplesigning.v1+json'), 'the signature manifest does not carry one OpenPGP signature'],
    ['a signature too large', (doc) => (doc.layers[0].size = (64 << 10) + 1), `its signature says it is ${(64 << 10) + 1} bytes`],
    ['another subject', (doc) => (doc.subject.digest = fakeDigest(1)), 'the signature manifest is about another manifest'],
    ['no subject', (doc) => delete doc.subject, 'the signature manifest is about another manifest'],
  ])('refuses %s', (_, change, why) => {
    expect(signatureRefusal(change)).toContain(why);
  });

  test('refuses a signature of another manifest', () => {
    expect(refusal(() => readSignatureManifest(bytes(), fakeDigest(1)))).toBe('the signature manifest is about another manifest');
  });
});
