import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { BoxbuildError, usageError } from '../../errors.js';
import { isObject } from '../json-file.js';
import { type OciReference, formatReference, parseReference } from './reference.js';

/*
 * Mirrors and registry settings as podman, skopeo and buildah read them: containers-registries.conf(5)
 * (version 2), its drop-in directories, and $CONTAINERS_REGISTRIES_CONF.
 */

/** Where a reference is pulled from: a mirror, or the registry itself (last), each with its own settings. */
export interface Endpoint {
  ref: OciReference;
  /** Spoken to in plain HTTP (`insecure = true`). */
  insecure: boolean;
  mirror: boolean;
}

const PULL_FROM_MIRROR = ['all', 'digest-only', 'tag-only'] as const;
type PullFromMirror = (typeof PULL_FROM_MIRROR)[number];

interface RegistrySection {
  prefix: string;
  location: string;
  insecure: boolean;
  blocked: boolean;
  mirrors: { location: string; insecure: boolean; pullFromMirror: PullFromMirror }[];
  file: string;
}

const MAX_CONFIG_BYTES = 1 << 20;

/** The files podman reads, in its order: the main file (the user's replaces the system's) and the drop-ins of both directories. */
export function registriesConfFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.CONTAINERS_REGISTRIES_CONF) return [env.CONTAINERS_REGISTRIES_CONF];
  const user = join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'containers');
  const main = [join(user, 'registries.conf'), '/etc/containers/registries.conf'].find((file) => existsSync(file));
  const dropIns = ['/etc/containers/registries.conf.d', join(user, 'registries.conf.d')].flatMap((dir) => {
    try {
      return readdirSync(dir).filter((name) => name.endsWith('.conf')).sort().map((name) => join(dir, name));
    } catch {
      return [];
    }
  });
  return [...(main ? [main] : []), ...dropIns];
}

/** The `[[registry]]` sections of one file; wrong types or a bad location are one line naming the file (exit 2). */
export function parseRegistriesConf(file: string, text: string): RegistrySection[] {
  const fail = (why: string): never => {
    throw usageError(`${file}: ${why} (see containers-registries.conf(5))`);
  };
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new BoxbuildError('usage', `${file}: not valid TOML: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  const sections = doc.registry ?? [];
  if (!Array.isArray(sections)) fail('"registry" must be a list of [[registry]] tables');
  const flag = (table: Record<string, unknown>, key: string) => {
    const value = table[key] ?? false;
    return typeof value === 'boolean' ? value : fail(`"${key}" must be true or false`);
  };
  const location = (table: Record<string, unknown>, key: string, fallback?: string) => {
    const value = table[key] ?? fallback;
    return typeof value === 'string' && value !== '' ? value.replace(/\/+$/, '') : fail(`a [[registry]] needs a "${key}"`);
  };
  return (sections as unknown[]).map((raw) => {
    const table = isObject(raw) ? raw : fail('each [[registry]] must be a table');
    const mirrors = table.mirror ?? [];
    if (!Array.isArray(mirrors)) fail('"mirror" must be a list of [[registry.mirror]] tables');
    const byDigestOnly = flag(table, 'mirror-by-digest-only');
    // A wildcard prefix (`*.example.com`) names hosts, not a location: references keep theirs.
    const wildcard = typeof table.prefix === 'string' && table.prefix.startsWith('*.');
    const primary = wildcard ? (table.location === undefined ? '' : fail('a [[registry]] with a wildcard prefix has no "location"')) : location(table, 'location', typeof table.prefix === 'string' ? table.prefix : undefined);
    return {
      prefix: typeof table.prefix === 'string' ? table.prefix.replace(/\/+$/, '') : primary,
      location: primary,
      insecure: flag(table, 'insecure'),
      blocked: flag(table, 'blocked'),
      file,
      mirrors: (mirrors as unknown[]).map((raw) => {
        const mirror = isObject(raw) ? raw : fail('each [[registry.mirror]] must be a table');
        const pull = mirror['pull-from-mirror'] ?? (byDigestOnly ? 'digest-only' : 'all');
        const pullFromMirror = PULL_FROM_MIRROR.find((choice) => choice === pull) ?? fail('"pull-from-mirror" must be "all", "digest-only" or "tag-only"');
        return { location: location(mirror, 'location'), insecure: flag(mirror, 'insecure'), pullFromMirror };
      }),
    };
  });
}

/** Whether `name` (registry/repository) falls under a prefix: the same, below it on a path boundary, or under a `*.domain` wildcard. */
function matches(prefix: string, name: string): boolean {
  if (prefix.startsWith('*.')) {
    const host = name.split('/')[0]!.replace(/:\d+$/, '');
    return host.endsWith(prefix.slice(1));
  }
  return name === prefix || name.startsWith(`${prefix}/`);
}

/** `name` with `prefix` replaced by `location`, as a reference. */
function rewrite(ref: OciReference, prefix: string, location: string, what: string): OciReference {
  const name = `${ref.registry}/${ref.repository}`;
  const moved = prefix.startsWith('*.') ? name : `${location}${name.slice(prefix.length)}`;
  return parseReference(`${moved}${ref.digest ? `@${ref.digest}` : `:${ref.tag}`}`, what);
}

/**
 * Where `ref` is pulled from, in order: the mirrors of the most specific `[[registry]]` that
 * matches (those its `pull-from-mirror` allows for a tag or a digest), then its location. A blocked
 * registry is one line (exit 69). Without a matching section, the reference alone.
 */
export function endpointsOf(ref: OciReference, sections: RegistrySection[]): Endpoint[] {
  const name = `${ref.registry}/${ref.repository}`;
  const section = sections
    .filter((candidate) => matches(candidate.prefix, name))
    .reduce<RegistrySection | undefined>((best, candidate) => (!best || candidate.prefix.length >= best.prefix.length ? candidate : best), undefined);
  if (!section) return [{ ref, insecure: false, mirror: false }];
  if (section.blocked) throw new BoxbuildError('boxUnavailable', `${formatReference(ref)}: the registry is blocked in ${section.file}`);
  const what = `${section.file}: a location`;
  const mirrors = section.mirrors
    .filter((mirror) => mirror.pullFromMirror === 'all' || (mirror.pullFromMirror === 'digest-only') === Boolean(ref.digest))
    .map((mirror) => ({ ref: rewrite(ref, section.prefix, mirror.location, what), insecure: mirror.insecure, mirror: true }));
  return [...mirrors, { ref: rewrite(ref, section.prefix, section.location, what), insecure: section.insecure, mirror: false }];
}

/** The sections of every file podman would read; later files replace earlier sections of the same prefix. */
export function loadRegistriesConf(env: NodeJS.ProcessEnv = process.env): RegistrySection[] {
  const byPrefix = new Map<string, RegistrySection>();
  for (const file of registriesConfFiles(env)) {
    let text: string;
    try {
      const bytes = readFileSync(file);
      if (bytes.length > MAX_CONFIG_BYTES) throw usageError(`${file}: larger than 1 MiB`);
      text = bytes.toString('utf8');
    } catch (error) {
      if (error instanceof BoxbuildError) throw error;
      if (env.CONTAINERS_REGISTRIES_CONF) throw usageError(`CONTAINERS_REGISTRIES_CONF: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? error})`);
      continue;
    }
    for (const section of parseRegistriesConf(file, text)) byPrefix.set(section.prefix, section);
  }
  return [...byPrefix.values()];
}
