import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { endpointsOf, loadRegistriesConf, parseRegistriesConf, registriesConfFiles } from '../../../../src/box/oci/mirrors.js';
import { formatReference, parseReference } from '../../../../src/box/oci/reference.js';
import { tempDir } from '../../../helpers/temp.js';

const CONF = `
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "registry.example.com"
[[registry.mirror]]
location = "mirror.local:5000/cache"
insecure = true
[[registry.mirror]]
location = "pinned.local/boxes"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "registry.example.com/private"
location = "private.example.com/team"
insecure = true

[[registry]]
prefix = "*.blocked.example"
blocked = true

[[registry]]
location = "old.example.com"
mirror-by-digest-only = true
[[registry.mirror]]
location = "old-mirror.local"
`;

const sections = parseRegistriesConf('registries.conf', CONF);
const DIGEST = `sha256:${'a'.repeat(64)}`;
/** Where a reference is pulled from, as references and flags. */
const endpoints = (text: string) => endpointsOf(parseReference(text), sections).map(({ ref, insecure, mirror }) => `${formatReference(ref)}${insecure ? ' insecure' : ''}${mirror ? ' mirror' : ''}`);

describe('registries.conf: where a box is pulled from', () => {
  test('a tag: the mirrors that serve tags, in order, then the registry; the path below the prefix is kept', () => {
    expect(endpoints('registry.example.com/boxes/debian:1')).toEqual(['mirror.local:5000/cache/boxes/debian:1 insecure mirror', 'registry.example.com/boxes/debian:1']);
  });

  test('a digest: every mirror, digest-only ones too', () => {
    expect(endpoints(`registry.example.com/boxes/debian@${DIGEST}`)).toEqual([
      `mirror.local:5000/cache/boxes/debian@${DIGEST} insecure mirror`,
      `pinned.local/boxes/boxes/debian@${DIGEST} mirror`,
      `registry.example.com/boxes/debian@${DIGEST}`,
    ]);
  });

  test('the most specific prefix wins, and its location replaces the prefix', () => {
    expect(endpoints('registry.example.com/private/kiwi:2')).toEqual(['private.example.com/team/kiwi:2 insecure']);
    expect(endpoints('registry.example.com/privateer/kiwi:2')[1]).toBe('registry.example.com/privateer/kiwi:2'); // a path boundary, not a string prefix
  });

  test('mirror-by-digest-only keeps a tag off the mirrors', () => {
    expect(endpoints('old.example.com/b:1')).toEqual(['old.example.com/b:1']);
    expect(endpoints(`old.example.com/b@${DIGEST}`)).toEqual([`old-mirror.local/b@${DIGEST} mirror`, `old.example.com/b@${DIGEST}`]);
  });

  test('a blocked registry (by wildcard) is refused, exit 69; an unnamed one is asked alone', () => {
    expect(() => endpoints('r.blocked.example/x:1')).toThrow(expect.objectContaining({ exitCode: 69, message: 'r.blocked.example/x:1: the registry is blocked in registries.conf' }));
    expect(endpoints('elsewhere.example/x:1')).toEqual(['elsewhere.example/x:1']);
  });

  test.each([
    ['not TOML', 'registries.conf: not valid TOML'],
    ['registry = 1', '"registry" must be a list of [[registry]] tables'],
    ['[[registry]]\ninsecure = true', 'a [[registry]] needs a "location"'],
    ['[[registry]]\nlocation = "a.example"\ninsecure = "yes"', '"insecure" must be true or false'],
    ['[[registry]]\nlocation = "a.example"\n[[registry.mirror]]\nlocation = "m.example"\npull-from-mirror = "some"', '"pull-from-mirror" must be "all", "digest-only" or "tag-only"'],
  ])('a broken file is one line naming it, exit 2: %s', (text, said) => {
    expect(() => parseRegistriesConf('registries.conf', text)).toThrow(expect.objectContaining({ exitCode: 2, message: expect.stringContaining(said) }));
  });

  test('the files podman reads: $CONTAINERS_REGISTRIES_CONF alone, else the user\'s file (replacing the system\'s) and the drop-ins; a later section of a prefix replaces an earlier one', () => {
    const home = tempDir();
    expect(registriesConfFiles({ CONTAINERS_REGISTRIES_CONF: '/x.conf', HOME: home })).toEqual(['/x.conf']);
    const dir = join(home, '.config/containers');
    mkdirSync(join(dir, 'registries.conf.d'), { recursive: true });
    writeFileSync(join(dir, 'registries.conf'), '[[registry]]\nlocation = "a.example"\n[[registry.mirror]]\nlocation = "first.example"\n');
    writeFileSync(join(dir, 'registries.conf.d', '50-later.conf'), '[[registry]]\nlocation = "a.example"\n[[registry.mirror]]\nlocation = "later.example"\n');
    const files = registriesConfFiles({ HOME: home });
    expect(files.filter((file) => file.startsWith(home))).toEqual([join(dir, 'registries.conf'), join(dir, 'registries.conf.d', '50-later.conf')]);
    const loaded = loadRegistriesConf({ CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf') });
    expect(endpointsOf(parseReference('a.example/b:1'), loaded)[0]!.ref.registry).toBe('first.example');
    expect(() => loadRegistriesConf({ CONTAINERS_REGISTRIES_CONF: join(home, 'missing.conf') })).toThrow(expect.objectContaining({ exitCode: 2 }));
  });
});
