import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { authFiles, basicAuth, credentialsIn, findCredentials, parseChallenge } from '../../../../src/box/oci/auth.js';
import { tempDir } from '../../../helpers/temp.js';

let dir: string;
let count = 0;

beforeAll(() => {
  dir = tempDir();
});

const auth = (user: string, password: string) => ({ auth: Buffer.from(`${user}:${password}`).toString('base64') });

/** An auth file of these entries (or this text), in a file of its own. */
function authFile(content: object | string): string {
  const file = join(dir, `auth-${++count}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify({ auths: content }));
  return file;
}

/** Who the file's credentials for `registry/repository` are, or undefined. */
const who = (file: string, registry: string, repository: string) => {
  const found = credentialsIn(file, registry, repository);
  return found && `${found.username}:${found.password}`;
};

describe('credentialsIn', () => {
  test('a registry key, with or without a scheme or a trailing slash', () => {
    expect(credentialsIn(authFile({ 'r.example': auth('u', 'p') }), 'r.example', 'x')).toEqual({ username: 'u', password: 'p', file: join(dir, `auth-${count}.json`) });
    expect(who(authFile({ 'https://r.example': auth('u', 'p') }), 'r.example', 'a/b')).toBe('u:p');
    expect(who(authFile({ 'http://r.example/': auth('u', 'p') }), 'r.example', 'a/b')).toBe('u:p');
    expect(who(authFile({ 'r.example:5000': auth('u', 'p') }), 'r.example:5000', 'x')).toBe('u:p');
    // the key names a host and a port: another port, or no port, is another registry
    expect(who(authFile({ 'r.example:5000': auth('u', 'p') }), 'r.example', 'x')).toBeUndefined();
    expect(who(authFile({ 'r.example': auth('u', 'p') }), 'r.example:5000', 'x')).toBeUndefined();
    expect(who(authFile({ 'r.example': auth('u', 'p') }), 'other.example', 'r.example')).toBeUndefined();
  });

  test('a key with a scheme names its host only, as docker login wrote it ("https://host/v1/")', () => {
    expect(who(authFile({ 'https://r.example/v1/': auth('u', 'p') }), 'r.example', 'x')).toBe('u:p');
    expect(who(authFile({ 'https://r.example:5000/v2/': auth('u', 'p') }), 'r.example:5000', 'a/b')).toBe('u:p');
    expect(who(authFile({ 'https://r.example/team/': auth('u', 'p') }), 'r.example', 'other/x')).toBe('u:p');
  });

  test('a password may hold colons; the user name is what comes before the first', () => {
    expect(who(authFile({ 'r.example': auth('u', 'p:a:ss') }), 'r.example', 'x')).toBe('u:p:a:ss');
  });

  test('the longest namespace that contains the repository wins, on path boundaries', () => {
    const file = authFile({
      'r.example': auth('host', 'p'),
      'r.example/ab': auth('ab', 'p'),
      'r.example/team': auth('team', 'p'),
      'r.example/team/box': auth('team-box', 'p'),
    });
    expect(who(file, 'r.example', 'abc/x')).toBe('host:p');
    expect(who(file, 'r.example', 'ab/x')).toBe('ab:p');
    expect(who(file, 'r.example', 'ab')).toBe('ab:p');
    expect(who(file, 'r.example', 'team/boxes')).toBe('team:p');
    expect(who(file, 'r.example', 'team/box')).toBe('team-box:p');
    expect(who(file, 'r.example', 'team/box/debian')).toBe('team-box:p');
    expect(who(file, 'r.example', 'teams/box')).toBe('host:p');
    expect(who(authFile({ 'r.example/ab': auth('ab', 'p') }), 'r.example', 'abc/x')).toBeUndefined();
  });

  test('an entry without a usable auth is passed over for a shorter key', () => {
    const file = authFile({
      'r.example': auth('host', 'p'),
      'r.example/a': { auth: Buffer.from('nocolon').toString('base64') },
      'r.example/a/b': { auth: 3 },
      'r.example/a/b/c': { identitytoken: 'x' },
      'r.example/a/b/c/d': null,
      'r.example/a/b/c/d/e': { auth: Buffer.from(':emptyuser').toString('base64') },
    });
    expect(who(file, 'r.example', 'a/b/c/d/e/f')).toBe('host:p');
    expect(who(authFile({ 'r.example': { auth: 'bm9jb2xvbg==' } }), 'r.example', 'x')).toBeUndefined();
  });

  test('a missing, malformed, odd or too large file names no credentials, and does not throw', () => {
    expect(who(join(dir, 'missing.json'), 'r.example', 'x')).toBeUndefined();
    expect(who(dir, 'r.example', 'x')).toBeUndefined();
    for (const text of ['', '{', 'null', '[]', '"auths"', '{"auths": null}', '{"auths": []}', '{"auths": "r.example"}', '{"auths": {"r.example": "x"}}']) {
      expect(who(authFile(text), 'r.example', 'x'), text).toBeUndefined();
    }
    const entry = JSON.stringify({ auths: { 'r.example': auth('u', 'p') } });
    expect(who(authFile(entry), 'r.example', 'x')).toBe('u:p');
    expect(who(authFile(entry + ' '.repeat((1 << 20) - entry.length)), 'r.example', 'x')).toBe('u:p');
    expect(who(authFile(entry + ' '.repeat((1 << 20) - entry.length + 1)), 'r.example', 'x')).toBeUndefined();
  });

  test('a file that is not a regular file (a FIFO no one writes, an endless device) is passed over at once', () => {
    const fifo = join(dir, 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    expect(who(fifo, 'r.example', 'x')).toBeUndefined();
    expect(who('/dev/zero', 'r.example', 'x')).toBeUndefined();
  });
});

describe('authFiles and findCredentials', () => {
  test('REGISTRY_AUTH_FILE, then the runtime and the config directory of containers, then docker', () => {
    const env = { HOME: '/h', REGISTRY_AUTH_FILE: '/a.json', XDG_RUNTIME_DIR: '/run/user/1', XDG_CONFIG_HOME: '/c', DOCKER_CONFIG: '/d' };
    expect(authFiles(env)).toEqual(['/a.json', '/run/user/1/containers/auth.json', '/c/containers/auth.json', '/d/config.json']);
    expect(authFiles({ HOME: '/h' })).toEqual(['/h/.config/containers/auth.json', '/h/.docker/config.json']);
    expect(authFiles({ HOME: '/h', REGISTRY_AUTH_FILE: '', XDG_RUNTIME_DIR: '', XDG_CONFIG_HOME: '', DOCKER_CONFIG: '' })).toEqual(['/h/.config/containers/auth.json', '/h/.docker/config.json']);
  });

  test('the first file that names the registry wins; files that do not are passed over', () => {
    const home = join(dir, 'home');
    mkdirSync(join(home, '.config', 'containers'), { recursive: true });
    mkdirSync(join(home, '.docker'), { recursive: true });
    writeFileSync(join(home, '.config', 'containers', 'auth.json'), JSON.stringify({ auths: { 'a.example': auth('podman', 'p') } }));
    writeFileSync(join(home, '.docker', 'config.json'), JSON.stringify({ auths: { 'a.example': auth('docker', 'p'), 'b.example': auth('docker', 'p') } }));
    const env = { HOME: home, REGISTRY_AUTH_FILE: authFile('not json') };
    expect(findCredentials('a.example', 'x', env)).toMatchObject({ username: 'podman', file: join(home, '.config', 'containers', 'auth.json') });
    expect(findCredentials('b.example', 'x', env)).toMatchObject({ username: 'docker', file: join(home, '.docker', 'config.json') });
    expect(findCredentials('c.example', 'x', env)).toBeUndefined();
    expect(findCredentials('a.example', 'x', { ...env, REGISTRY_AUTH_FILE: authFile({ 'a.example': auth('own', 'p') }) })).toMatchObject({ username: 'own' });
  });
});

describe('parseChallenge', () => {
  test.each([
    ['Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"', { scheme: 'bearer', realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' }],
    ['bearer  Realm="https://a/t" , Service="s"', { scheme: 'bearer', realm: 'https://a/t', service: 's', scope: undefined }],
    ['Bearer realm=https://a/t,service=s', { scheme: 'bearer', realm: 'https://a/t', service: 's', scope: undefined }],
    ['Bearer realm="https://a/t",scope="repository:a:pull,push"', { scheme: 'bearer', realm: 'https://a/t', service: undefined, scope: 'repository:a:pull,push' }],
    ['Bearer realm="https://a/t?x=\\"y\\"",service="a\\\\b"', { scheme: 'bearer', realm: 'https://a/t?x="y"', service: 'a\\b', scope: undefined }],
    ['Bearer service="realm=https://evil/",realm="https://a/t"', { scheme: 'bearer', realm: 'https://a/t', service: 'realm=https://evil/', scope: undefined }],
    ['Basic realm="Registry"', { scheme: 'basic' }],
    ['BASIC', { scheme: 'basic' }],
  ])('%s', (header, expected) => {
    expect(parseChallenge(header)).toEqual(expected);
  });

  test.each([undefined, '', '   ', 'Negotiate abc', 'Digest realm="x"', 'Bearer', 'Bearer service="s"', 'Bearer realm=""', 'Bearer realm', '"Bearer" realm="x"', 'Bearerrealm="x"', '=,,,"'])('refuses %j', (header) => {
    expect(parseChallenge(header)).toBeUndefined();
  });

  test('a long garbage header is read in linear time', () => {
    const started = Date.now();
    expect(parseChallenge(`Bearer ${'a="\\'.repeat(50_000)}`)).toBeUndefined();
    expect(parseChallenge(`Bearer ${'a='.repeat(50_000)}`)).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

test('basicAuth', () => {
  expect(basicAuth({ username: 'u', password: 'p:w', file: 'f' })).toBe(`Basic ${Buffer.from('u:p:w').toString('base64')}`);
});
