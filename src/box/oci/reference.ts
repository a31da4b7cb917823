import { isIP } from 'node:net';
import { usageError } from '../../errors.js';
import type { Arch } from '../arch.js';

/** A box in an OCI registry: `registry/repository[:tag][@sha256:digest]`. */
export interface OciReference {
  /** host[:port], as written (the key of credentials in auth files). */
  registry: string;
  repository: string;
  /** The tag asked for; `latest` when neither a tag nor a digest is given. */
  tag?: string;
  /** A pinned manifest digest (`sha256:<hex>`): the box never changes. */
  digest?: string;
}

// The grammar of distribution's reference package, narrowed to what boxbuild accepts.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REPOSITORY = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const DIGEST = /^sha256:[0-9a-f]{64}$/;
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[([0-9A-Fa-f:.]+)\])(?::([0-9]{1,5}))?$/;

/** Whether a registry is a host name or a bracketed IPv6 address, with a port a URL can have. */
function isHost(registry: string): boolean {
  const match = HOST.exec(registry);
  if (!match) return false;
  const [, ipv6, port] = match;
  return (ipv6 === undefined || isIP(ipv6) === 6) && (port === undefined || (Number(port) >= 1 && Number(port) <= 65535));
}

/**
 * Parses a reference. The registry must be named (a first component with a dot or a port, or
 * localhost): boxbuild has no default registry to send a name to.
 */
export function parseReference(text: string, what = 'OCI reference'): OciReference {
  const fail = (why: string): never => {
    throw usageError(`${what} "${text}": ${why} (expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/boxes/debian:stable)`);
  };
  const [name, digest, extra] = text.split('@');
  if (extra !== undefined || name === undefined) fail('more than one "@"');
  if (digest !== undefined && !DIGEST.test(digest)) fail('the digest is not sha256: and 64 lower-case hex digits');
  const slash = name!.indexOf('/');
  if (slash < 0) fail('no registry named');
  const registry = name!.slice(0, slash);
  if (!isHost(registry) || !(/[.:[]/.test(registry) || registry === 'localhost')) fail(`"${registry}" is not a registry host (it needs a dot or a port, or is localhost)`);
  const rest = name!.slice(slash + 1);
  const colon = rest.lastIndexOf(':');
  const repository = colon < 0 ? rest : rest.slice(0, colon);
  const tag = colon < 0 ? undefined : rest.slice(colon + 1);
  if (!REPOSITORY.test(repository) || repository.length > 255) fail(`"${repository}" is not a repository name (lower-case letters, digits, separators and "/")`);
  if (tag !== undefined && !TAG.test(tag)) fail(`"${tag}" is not a tag`);
  return { registry, repository, tag: tag ?? (digest ? undefined : 'latest'), digest };
}

export function formatReference({ registry, repository, tag, digest }: OciReference): string {
  return `${registry}/${repository}${tag ? `:${tag}` : ''}${digest ? `@${digest}` : ''}`;
}

/** What a manifest is asked for by: its pinned digest, else its tag. */
export const manifestRef = (ref: OciReference) => ref.digest ?? ref.tag!;

/** The host of a registry without its port or brackets. */
function hostOf(registry: string): string {
  const bracketed = /^\[([^\]]+)\]/.exec(registry);
  return bracketed ? bracketed[1]! : registry.replace(/:\d+$/, '');
}

const isLoopback = (host: string) => host === 'localhost' || (isIP(host) === 4 && host.startsWith('127.')) || host === '::1';

/**
 * The registry's base URL: HTTPS, except for a loopback registry, one the user names in
 * BOXBUILD_INSECURE_REGISTRIES (comma-separated host[:port]) and one registries.conf calls
 * `insecure` (`insecure`), which are spoken to in plain HTTP.
 */
export function registryBase(registry: string, env: NodeJS.ProcessEnv = process.env, insecure = false): string {
  const named = (env.BOXBUILD_INSECURE_REGISTRIES ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
  const plain = insecure || isLoopback(hostOf(registry)) || named.includes(registry) || named.includes(hostOf(registry));
  return `${plain ? 'http' : 'https'}://${registry}`;
}

/** The OCI (GOARCH) name of an architecture, as index entries name platforms. */
export function ociArch(arch: Arch): string {
  return { x86_64: 'amd64', aarch64: 'arm64', s390x: 's390x', ppc64le: 'ppc64le', riscv64: 'riscv64' }[arch];
}
