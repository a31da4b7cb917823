import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isObject } from '../json-file.js';

/** A user name and password for a registry, as `podman login` and `docker login` keep them. */
export interface Credentials {
  username: string;
  password: string;
  /** The file they came from (for messages). */
  file: string;
}

/** The auth files podman, skopeo and docker read, in their order: the first that names the registry wins. */
export function authFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || homedir();
  return [
    env.REGISTRY_AUTH_FILE,
    env.XDG_RUNTIME_DIR && join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'),
    join(env.XDG_CONFIG_HOME || join(home, '.config'), 'containers', 'auth.json'),
    join(env.DOCKER_CONFIG || join(home, '.docker'), 'config.json'),
  ].filter((file): file is string => Boolean(file));
}

/** The most an auth file may be: it is read whole. */
const MAX_AUTH_FILE = 1 << 20;

/**
 * An auth file's bytes; undefined when it is not a regular file of at most MAX_AUTH_FILE bytes
 * (a FIFO would block the open, a device would be read without end).
 */
function readAuthFile(file: string): Buffer | undefined {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = fstatSync(fd);
    return info.isFile() && info.size <= MAX_AUTH_FILE ? readFileSync(fd) : undefined;
  } finally {
    closeSync(fd);
  }
}

/** The `registry[/namespace]` an auth file key names: a key with a scheme is a URL, which names a whole registry (podman's rule). */
function keyPath(key: string): string {
  const bare = key.replace(/^https?:\/\//, '');
  return bare === key ? bare.replace(/\/+$/, '') : bare.split('/')[0]!;
}

/**
 * The credentials of `registry/repository` in one auth file: the entry of the longest
 * `registry[/namespace]` key that contains the repository (podman's rule), with or without a
 * scheme. Undefined when the file is missing, unreadable or names no such entry.
 */
export function credentialsIn(file: string, registry: string, repository: string): Credentials | undefined {
  let auths: unknown;
  try {
    const text = readAuthFile(file);
    if (text === undefined || text.length > MAX_AUTH_FILE) return undefined;
    auths = (JSON.parse(text.toString('utf8')) as { auths?: unknown }).auths;
  } catch {
    return undefined;
  }
  if (!isObject(auths)) return undefined;
  const path = `${registry}/${repository}`;
  const keys = Object.keys(auths)
    .map((key) => ({ key, bare: keyPath(key) }))
    .filter(({ bare }) => bare === registry || path === bare || path.startsWith(`${bare}/`))
    .sort((a, b) => b.bare.length - a.bare.length);
  for (const { key } of keys) {
    const entry = auths[key];
    const encoded = isObject(entry) && typeof entry.auth === 'string' ? entry.auth : undefined;
    const decoded = encoded === undefined ? '' : Buffer.from(encoded, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), file };
  }
  return undefined;
}

export function findCredentials(registry: string, repository: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  for (const file of authFiles(env)) {
    const found = credentialsIn(file, registry, repository);
    if (found) return found;
  }
  return undefined;
}

/** What a registry's 401 asks for (`WWW-Authenticate`). */
export type Challenge = { scheme: 'bearer'; realm: string; service?: string; scope?: string } | { scheme: 'basic' };

/** Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; undefined for anything else. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header ?? '');
  if (!match) return undefined;
  const scheme = match[1]!.toLowerCase();
  if (scheme === 'basic') return { scheme: 'basic' };
  if (scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const [, key, quoted, bare] of match[2]!.matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/g)) {
    params[key!.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare!;
  }
  if (!params.realm) return undefined;
  return { scheme: 'bearer', realm: params.realm, service: params.service, scope: params.scope };
}

export const basicAuth = ({ username, password }: Credentials) => `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
