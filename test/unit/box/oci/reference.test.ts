import { describe, expect, test } from 'vitest';
import { BoxbuildError } from '../../../../src/errors.js';
import { formatReference, manifestRef, ociArch, parseReference, registryBase } from '../../../../src/box/oci/reference.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

/** The reason a reference is refused (the text between the quoted reference and the expected form). */
function refusal(text: string): string {
  try {
    parseReference(text);
  } catch (error) {
    expect(error).toBeInstanceOf(BoxbuildError);
    expect((error as BoxbuildError).kind).toBe('usage');
    return (error as Error).message;
  }
  return 'accepted';
}

describe('parseReference', () => {
  test.each([
    ['127.0.0.1:5000/boxes/debian:stable', { registry: '127.0.0.1:5000', repository: 'boxes/debian', tag: 'stable' }],
    ['registry.example/a/b', { registry: 'registry.example', repository: 'a/b', tag: 'latest' }],
    ['registry.example:443/a/b/c:v1.2_3-x', { registry: 'registry.example:443', repository: 'a/b/c', tag: 'v1.2_3-x' }],
    [`registry.example/debian@${DIGEST}`, { registry: 'registry.example', repository: 'debian', digest: DIGEST }],
    [`registry.example/debian:12@${DIGEST}`, { registry: 'registry.example', repository: 'debian', tag: '12', digest: DIGEST }],
    ['localhost/x', { registry: 'localhost', repository: 'x', tag: 'latest' }],
    ['localhost:5000/x', { registry: 'localhost:5000', repository: 'x', tag: 'latest' }],
    ['[::1]:5000/x', { registry: '[::1]:5000', repository: 'x', tag: 'latest' }],
    ['[::1]/x', { registry: '[::1]', repository: 'x', tag: 'latest' }],
    ['registry.example:65535/x', { registry: 'registry.example:65535', repository: 'x', tag: 'latest' }],
    ['r.example/my_box.v2/deb--ian__x:T', { registry: 'r.example', repository: 'my_box.v2/deb--ian__x', tag: 'T' }],
  ])('%s', (text, expected) => {
    const ref = parseReference(text);
    expect(ref).toEqual({ tag: undefined, digest: undefined, ...expected });
    expect(parseReference(formatReference(ref))).toEqual(ref);
  });

  test('a reference without a tag formats with latest; what a manifest is asked for is the digest, else the tag', () => {
    expect(formatReference(parseReference('localhost/x'))).toBe('localhost/x:latest');
    expect(manifestRef(parseReference('localhost/x:1'))).toBe('1');
    expect(manifestRef(parseReference(`localhost/x:1@${DIGEST}`))).toBe(DIGEST);
    expect(formatReference({ registry: 'localhost', repository: 'x' })).toBe('localhost/x');
  });

  test.each([
    ['', 'no registry named'],
    ['debian:1', 'no registry named'],
    ['debian', 'no registry named'],
    ['library/debian', '"library" is not a registry host'],
    ['/debian', '"" is not a registry host'],
    ['-bad.example/x', '"-bad.example" is not a registry host'],
    ['bad_host.example/x', '"bad_host.example" is not a registry host'],
    ['registry.example:port/x', '"registry.example:port" is not a registry host'],
    ['registry.example:123456/x', 'is not a registry host'],
    ['registry.example:65536/x', '"registry.example:65536" is not a registry host'],
    ['registry.example:0/x', '"registry.example:0" is not a registry host'],
    ['[:]:5000/x', '"[:]:5000" is not a registry host'],
    ['[1.2.3.4]/x', '"[1.2.3.4]" is not a registry host'],
    ['[::1/x', 'is not a registry host'],
    ['registry.example/', '"" is not a repository name'],
    ['registry.example/Debian', '"Debian" is not a repository name'],
    ['registry.example/a//b', '"a//b" is not a repository name'],
    ['registry.example/a/', '"a/" is not a repository name'],
    ['registry.example/../x', '"../x" is not a repository name'],
    ['registry.example/a/../b', 'is not a repository name'],
    ['registry.example/-a', 'is not a repository name'],
    ['registry.example/a.', 'is not a repository name'],
    ['registry.example/a...b', 'is not a repository name'],
    ['registry.example/a?b', 'is not a repository name'],
    ['registry.example/a#b', 'is not a repository name'],
    ['registry.example/a%2fb', 'is not a repository name'],
    [`registry.example/${'a'.repeat(256)}`, 'is not a repository name'],
    ['registry.example/x:', '"" is not a tag'],
    ['registry.example/x:.tag', '".tag" is not a tag'],
    ['registry.example/x:-tag', '"-tag" is not a tag'],
    ['registry.example/x:a/b', 'is not a tag'],
    ['registry.example/x:a:b', 'is not a repository name'],
    [`registry.example/x:${'t'.repeat(129)}`, 'is not a tag'],
    ['registry.example/x:t a', 'is not a tag'],
    ['registry.example/x@', 'the digest is not sha256:'],
    ['registry.example/x@sha256:abc', 'the digest is not sha256:'],
    [`registry.example/x@sha256:${'AB'.repeat(32)}`, 'the digest is not sha256:'],
    [`registry.example/x@sha512:${'ab'.repeat(64)}`, 'the digest is not sha256:'],
    [`registry.example/x@${DIGEST}0`, 'the digest is not sha256:'],
    [`registry.example/x@${DIGEST}@${DIGEST}`, 'more than one "@"'],
    ['registry.example/x@@', 'more than one "@"'],
  ])('refuses "%s"', (text, why) => {
    expect(refusal(text)).toContain(why);
  });

  test('the error names what was parsed and the form expected', () => {
    expect(() => parseReference('debian:1', 'f.json: box "b": field "oci"')).toThrow(
      'f.json: box "b": field "oci" "debian:1": no registry named (expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/boxes/debian:stable)',
    );
  });
});

describe('registryBase', () => {
  const none = {};
  test.each([
    ['registry.example', 'https://registry.example'],
    ['registry.example:5000', 'https://registry.example:5000'],
    ['127.0.0.1:5000', 'http://127.0.0.1:5000'],
    ['127.1.2.3', 'http://127.1.2.3'],
    ['localhost', 'http://localhost'],
    ['localhost:5000', 'http://localhost:5000'],
    ['[::1]:5000', 'http://[::1]:5000'],
    ['[::1]', 'http://[::1]'],
    // names that only look like loopback
    ['127.0.0.1.example', 'https://127.0.0.1.example'],
    ['localhost.example:5000', 'https://localhost.example:5000'],
    ['10.0.0.1:5000', 'https://10.0.0.1:5000'],
    ['[::2]:5000', 'https://[::2]:5000'],
  ])('%s → %s', (registry, base) => {
    expect(registryBase(registry, none)).toBe(base);
  });

  test('BOXBUILD_INSECURE_REGISTRIES names hosts, or hosts with their port, spoken to in plain HTTP', () => {
    const env = { BOXBUILD_INSECURE_REGISTRIES: ' a.example , b.example:5000,,' };
    expect(registryBase('a.example', env)).toBe('http://a.example');
    expect(registryBase('a.example:8080', env)).toBe('http://a.example:8080');
    expect(registryBase('b.example:5000', env)).toBe('http://b.example:5000');
    expect(registryBase('b.example', env)).toBe('https://b.example');
    expect(registryBase('b.example:5001', env)).toBe('https://b.example:5001');
    expect(registryBase('c.example', env)).toBe('https://c.example');
    expect(registryBase('sub.a.example', env)).toBe('https://sub.a.example');
    expect(registryBase('a.example', { BOXBUILD_INSECURE_REGISTRIES: '' })).toBe('https://a.example');
  });
});

test('ociArch: the GOARCH names of index platforms', () => {
  expect(['x86_64', 'aarch64', 's390x', 'ppc64le', 'riscv64'].map((arch) => ociArch(arch as never))).toEqual(['amd64', 'arm64', 's390x', 'ppc64le', 'riscv64']);
});
