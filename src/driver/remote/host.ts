import { usageError } from '../../errors.js';

/** A build host as `--host [USER@]HOST[:PORT]` names it (an IPv6 address in brackets: [::1]:2222). */
export interface HostSpec {
  user?: string;
  host: string;
  port?: number;
}

/** Parses `[USER@]HOST[:PORT]`; nothing ssh could take for an option. */
export function parseHostSpec(spec: string, what = '--host'): HostSpec {
  const match = /^(?:([^@\s]+)@)?(\[[0-9A-Fa-f:.]+\]|[^@:\s[\]]+)(?::(\d+))?$/.exec(spec);
  const bad = (why: string) => usageError(`${what} "${spec}": ${why}`);
  if (!match) throw bad('expected [USER@]HOST[:PORT]');
  const [, user, host, port] = match as unknown as [string, string | undefined, string, string | undefined];
  if (user?.startsWith('-') || host.startsWith('-')) throw bad('a user or host may not start with "-"');
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw bad('the port must be 1 to 65535');
  return { user, host: host.replace(/^\[(.*)\]$/, '$1'), port: port === undefined ? undefined : Number(port) };
}

export const describeHost = (spec: HostSpec) => `${spec.user ? `${spec.user}@` : ''}${spec.host.includes(':') ? `[${spec.host}]` : spec.host}${spec.port ? `:${spec.port}` : ''}`;
