import { describe, expect, test } from 'vitest';
import { findBox, loadRegistry, parseRegistry } from '../../../src/box/registry.js';

const doc = (box: object) => JSON.stringify({ boxes: { mybox: { buildProgram: '/b', arches: { x86_64: {} }, ...box } } });
const kernelFiles = { files: { kernel: { url: 'http://x/kernel', sha256: 'sidecar' }, initrd: { url: 'http://x/initrd', sha256: 'sidecar' } } };

describe('registry', () => {
  test('the bundled registry has the debian box', () => {
    const { box } = findBox(loadRegistry(), 'debian', 'x86_64');
    expect(box.make).toBe('debian');
    expect(box.buildProgram).toBe('/usr/lib/boxbuild/build');
  });
  test('defaults', () => {
    const [box] = parseRegistry('f.json', doc(kernelFiles));
    expect(box).toMatchObject({ name: 'mybox', protocol: 'boxbuild', memoryMiB: 1024, cpus: 1, console: 'ttyS0', cmdline: '' });
  });
  test('errors name the file, the box and the field', () => {
    expect(() => parseRegistry('f.json', doc({ ...kernelFiles, cpus: 'two' }))).toThrow('f.json: box "mybox": field "cpus" must be a positive whole number');
    expect(() => parseRegistry('f.json', doc({ memmory: 5 }))).toThrow('f.json: box "mybox": unknown field "memmory"');
    expect(() => parseRegistry('f.json', doc({ arches: { sparc: {} } }))).toThrow('unknown architecture "sparc"');
    expect(() => parseRegistry('f.json', doc({ ...kernelFiles, console: 'tty9' }))).toThrow('field "console" must be one of ttyS0, hvc0');
    expect(() => parseRegistry('f.json', '{')).toThrow('f.json: not valid JSON');
    expect(() => parseRegistry('f.json', '{"boxes": 3}')).toThrow('expected an object with a "boxes" object');
  });
  test('made system boxes list their packages: the box\'s, then the architecture\'s', () => {
    const { box } = findBox(loadRegistry(), 'debian-kiwi', 'aarch64');
    expect(box).toMatchObject({ protocol: 'kiwi', make: 'debian-system' });
    expect(box.arches.aarch64!.packages).toEqual(expect.arrayContaining(['kiwi', 'kiwi-dracut-oem-repart', 'dosfstools', 'grub-efi-arm64-bin']));
    expect(box.arches.aarch64!.packages).not.toContain('grub-pc-bin');
    expect(findBox(loadRegistry(), 'debian-kiwi', 'x86_64').box.arches.x86_64!.packages).toContain('grub-pc-bin');
    const made = (box: object) => doc({ make: 'debian-system', ...box });
    expect(() => parseRegistry('f.json', doc({ ...kernelFiles, packages: ['vim'] }))).toThrow('field "packages" must be used only by boxes made with "make": "debian-system"');
    expect(() => parseRegistry('f.json', made({ packages: ['vim', 'Bad Name'] }))).toThrow('field "packages" must be a list of Debian package names (not "Bad Name")');
    expect(() => parseRegistry('f.json', made({ packages: [3] }))).toThrow('field "packages" must be a list of Debian package names');
  });
  test('unknown box or architecture', () => {
    expect(() => findBox(loadRegistry(), 'nope', 'x86_64')).toThrow(/^unknown box "nope"; the boxes are debian, debian-kiwi, debian-system, /);
    expect(() => findBox(loadRegistry(), 'debain', 'x86_64')).toThrow(/^unknown box "debain" \(did you mean "debian"\?\); the boxes are debian, /);
    expect(() => findBox(loadRegistry(), 'tumbelweed', 'x86_64')).toThrow('unknown box "tumbelweed" (did you mean "tumbleweed"?)');
    expect(() => findBox(loadRegistry(), 'debian', 'riscv64')).toThrow('has no riscv64 variant');
  });

  test('the KIWI self-contained boxes, with their published names and layout', () => {
    const registry = loadRegistry();
    const arches = (name: string) => Object.keys(registry.get(name)!.arches);
    expect(arches('tumbleweed')).toEqual(['x86_64', 'aarch64', 's390x']);
    expect(arches('leap')).toEqual(['x86_64']);
    expect(arches('fedora')).toEqual(['x86_64']);
    expect(arches('ubuntu')).toEqual(['x86_64', 'aarch64']);
    expect(arches('universal')).toEqual(['x86_64', 'aarch64', 's390x', 'ppc64le']);
    expect(arches('staging')).toEqual(['x86_64', 'aarch64', 's390x', 'ppc64le']);
    const { box, archEntry } = findBox(registry, 'tumbleweed', 'aarch64');
    expect(box).toMatchObject({ protocol: 'kiwi', memoryMiB: 8192, cpus: 4, console: 'hvc0' });
    const base = 'https://download.opensuse.org/repositories/Virtualization:/Appliances:/SelfContained:/tumbleweed/images/';
    expect(archEntry).toEqual({
      cmdline: 'root=/dev/vda2 rd.plymouth=0 selinux=0',
      packages: [],
      sources: [
        { role: 'packages', name: 'TumbleWeed-Box.aarch64-System.json', urls: [`${base}TumbleWeed-Box.aarch64-System.json`], checksum: 'none' },
        { role: 'kernelTarball', name: 'TumbleWeed-Box.aarch64-Kernel.tar.xz', urls: [`${base}TumbleWeed-Box.aarch64-Kernel.tar.xz`], checksum: 'sidecar' },
        { role: 'system', name: 'TumbleWeed-Box.aarch64-System.qcow2', urls: [`${base}TumbleWeed-Box.aarch64-System.qcow2`], checksum: 'sidecar' },
      ],
    });
    expect(findBox(registry, 'tumbleweed', 'x86_64').archEntry.cmdline).toBe('root=/dev/vda3 rd.plymouth=0');
    expect(findBox(registry, 'leap', 'x86_64').archEntry.cmdline).toBe('root=/dev/vda1 rd.plymouth=0');
    expect(findBox(registry, 'universal', 's390x').archEntry.cmdline).toBe('root=/dev/vda1 rd.plymouth=0 selinux=0');
    expect(findBox(registry, 'staging', 'ppc64le').archEntry.sources[1]!.urls[0]).toMatch(/SelfContained:\/staging\/images\/Staging-Box.ppc64le-Kernel.tar.xz$/);
  });
  test('file sources: mirrors in order, absolute URLs as they are, per-architecture overrides', () => {
    const [box] = parseRegistry(
      'f.json',
      doc({
        mirrors: ['http://a.example/{arch}', 'http://b.example/{arch}/'],
        files: { kernel: { url: 'vmlinux', sha256: 'A'.repeat(64) }, initrd: { url: ['initrd', 'http://c.example/initrd'], sha256: 'sidecar' } },
        arches: { x86_64: {}, aarch64: { files: { kernel: { url: 'http://d.example/Image', sha256: 'b'.repeat(64) } } } },
      }),
    );
    expect(box!.arches.x86_64!.sources).toEqual([
      { role: 'kernel', name: 'vmlinux', urls: ['http://a.example/x86_64/vmlinux', 'http://b.example/x86_64/vmlinux'], checksum: { pinned: 'a'.repeat(64) } },
      { role: 'initrd', name: 'initrd', urls: ['http://a.example/x86_64/initrd', 'http://b.example/x86_64/initrd', 'http://c.example/initrd'], checksum: 'sidecar' },
    ]);
    expect(box!.arches.aarch64!.sources[0]).toEqual({ role: 'kernel', name: 'Image', urls: ['http://d.example/Image'], checksum: { pinned: 'b'.repeat(64) } });
  });
  test('file errors name the file, the box and the field', () => {
    const files = (spec: object, arch: object = {}) => () => parseRegistry('f.json', doc({ files: spec, arches: { x86_64: arch } }));
    const kernel = { url: 'http://x/k', sha256: 'sidecar' };
    const initrd = { url: 'http://x/i', sha256: 'sidecar' };
    expect(files({ kernel: { url: 'http://x/k', sha265: 'sidecar' }, initrd })).toThrow('f.json: box "mybox": unknown field "files.kernel.sha265" (known: url, sha256, signature)');
    expect(files({ kernal: kernel, initrd })).toThrow('f.json: box "mybox": unknown field "files.kernal" (known: packages, kernel, initrd, kernelTarball, system)');
    expect(files({}, { files: { initrd: { ...initrd, sha256: 'abc' } } })).toThrow('f.json: box "mybox": field "arches.x86_64.files.initrd.sha256" must be 64 hex digits or "sidecar"');
    expect(files({ kernel: { url: 'k', sha256: 'sidecar' }, initrd })).toThrow('field "files.kernel.url" must be an absolute URL when there are no "mirrors"');
    expect(files({ kernel: { url: 'ftp://x/k', sha256: 'sidecar' }, initrd })).toThrow('field "files.kernel.url" must be an http(s) URL (not "ftp://x/k")');
    expect(files({ kernel: { url: 'http://x/', sha256: 'sidecar' }, initrd })).toThrow('field "files.kernel.url" must be a URL that ends in a file name');
    expect(files({ kernel })).toThrow('field "arches.x86_64.files" must be either "kernel" and "initrd", or "kernelTarball"');
    expect(files({ kernel, initrd, kernelTarball: { url: 'http://x/t.tar.xz', sha256: 'sidecar' } })).toThrow('must be either "kernel" and "initrd", or "kernelTarball"');
    expect(files({ kernel, initrd: { ...initrd, url: 'http://y/k' } })).toThrow('field "arches.x86_64.files" must be files with different names (two are "k")');
    expect(files({ kernel, initrd }, { cmdline: 3 })).toThrow('field "arches.x86_64.cmdline" must be a string');
    expect(() => parseRegistry('f.json', doc({ make: 'debian', files: { kernel, initrd } }))).toThrow('field "arches.x86_64.files" must be absent for a box made on this machine');
  });
});


describe('registry: boxes in an OCI registry', () => {
  // What dearmorPublicKey takes for a public key: an armored block whose first packet is one.
  const key = Buffer.from([0x99, 0x00, 0x01, 0x04]);
  const armored = (bytes: Buffer) => `-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n${bytes.toString('base64')}\n-----END PGP PUBLIC KEY BLOCK-----\n`;
  const parse = (box: object) => parseRegistry('f.json', doc(box))[0]!;

  test('"oci" of the box is every architecture\'s, with no files', () => {
    const box = parse({ oci: 'r.example:5000/boxes/mybox:1', arches: { x86_64: {}, aarch64: {} } });
    const ref = { registry: 'r.example:5000', repository: 'boxes/mybox', tag: '1', digest: undefined };
    expect(box.arches.x86_64).toEqual({ cmdline: '', sources: [], packages: [], oci: { ref, signedBy: undefined } });
    expect(box.arches.aarch64!.oci).toEqual({ ref, signedBy: undefined });
  });

  test('"oci" of an architecture wins over the box\'s; an architecture may come from files', () => {
    const digest = `sha256:${'c'.repeat(64)}`;
    const box = parse({ oci: 'r.example/b', arches: { x86_64: {}, aarch64: { oci: `localhost/arm@${digest}` } } });
    expect(box.arches.x86_64!.oci!.ref).toEqual({ registry: 'r.example', repository: 'b', tag: 'latest', digest: undefined });
    expect(box.arches.aarch64!.oci!.ref).toEqual({ registry: 'localhost', repository: 'arm', tag: undefined, digest });
    const mixed = parse({ arches: { x86_64: { oci: 'r.example/b' }, aarch64: kernelFiles } });
    expect(mixed.arches.x86_64!.oci).toBeDefined();
    expect(mixed.arches.aarch64!.oci).toBeUndefined();
    expect(mixed.arches.aarch64!.sources.map((source) => source.role)).toEqual(['kernel', 'initrd']);
  });

  test('a box made on this machine may be pulled from a registry instead', () => {
    expect(parse({ make: 'debian', oci: 'r.example/debian' }).arches.x86_64!.oci!.ref.repository).toBe('debian');
  });

  test('"openpgpKey" pins the key its signature must verify with: the architecture\'s, else the box\'s', () => {
    const other = Buffer.from([0xc6, 0x01, 0x04]);
    const box = parse({ oci: 'r.example/b', openpgpKey: armored(key), arches: { x86_64: {}, aarch64: { openpgpKey: armored(other) } } });
    expect(box.arches.x86_64!.oci!.signedBy).toEqual(key);
    expect(box.arches.aarch64!.oci!.signedBy).toEqual(other);
    expect(() => parse({ oci: 'r.example/b', openpgpKey: 'not a key' })).toThrow('f.json: box "mybox": field "openpgpKey" must be an ASCII-armored OpenPGP public key block');
  });

  test('"oci" is refused with "files" or "mirrors", of the box or the architecture', () => {
    expect(() => parse({ oci: 'r.example/b', ...kernelFiles })).toThrow('f.json: box "mybox": field "oci" must be used without "files" (a box comes from a registry or from files)');
    expect(() => parse({ oci: 'r.example/b', arches: { x86_64: kernelFiles } })).toThrow('f.json: box "mybox": field "oci" must be used without "files"');
    expect(() => parse({ oci: 'r.example/b', mirrors: ['http://m.example/'] })).toThrow('f.json: box "mybox": field "oci" must be used without "mirrors"');
    expect(() => parse({ arches: { x86_64: { oci: 'r.example/b', mirrors: 'http://m.example/' } } })).toThrow('f.json: box "mybox": field "arches.x86_64.oci" must be used without "mirrors"');
    expect(() => parse({ ...kernelFiles, arches: { x86_64: { oci: 'r.example/b' } } })).toThrow('f.json: box "mybox": field "arches.x86_64.oci" must be used without "files"');
  });

  test('an invalid reference is refused, naming the file, the box and the field', () => {
    expect(() => parse({ oci: 'debian:12' })).toThrow('f.json: box "mybox": field "oci" "debian:12": no registry named (expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]');
    expect(() => parse({ arches: { x86_64: { oci: 'r.example/Debian' } } })).toThrow('f.json: box "mybox": field "arches.x86_64.oci" "r.example/Debian": "Debian" is not a repository name');
    expect(() => parse({ oci: ['r.example/b'] })).toThrow('f.json: box "mybox": field "oci" must be a string');
    expect(() => parse({ arches: { x86_64: { oci: 5 } } })).toThrow('f.json: box "mybox": field "arches.x86_64.oci" must be a string');
  });
});
