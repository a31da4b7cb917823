import { EGRESS_URL } from '../qemu/egress-link.js';
import { DEFAULT_NETWORK, type NetworkChoice } from './mode.js';

/*
 * The guest's network: QEMU user networking (no root, no bridge). The guest always sees the same
 * network (address 10.0.2.15, the host as 10.0.2.2, a DNS server at 10.0.2.3, the egress proxy at
 * 10.0.2.100:3128); the box's init configures it at boot, so a saved state carries nothing of one
 * run's network into the next. A filtered network (the default) reaches nothing but the proxy.
 */

/** The address at which the guest of a full network reaches the host's loopback interface. */
export const HOST_FROM_GUEST = '10.0.2.2';

const PROXY_VARIABLES = ['http_proxy', 'https_proxy', 'ftp_proxy', 'all_proxy', 'no_proxy'].flatMap((name) => [name, name.toUpperCase()]);

/** A URL (a proxy's, a mirror's) as the guest must write it: the host's loopback is the host's 10.0.2.2 there. */
export function guestProxyUrl(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/(?:[^@/]*@)?)(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?=[:/]|$)/i, `$1${HOST_FROM_GUEST}`);
}

/** The host's proxy settings, for the guest's environment (builds download through the same proxy). */
export function guestProxyEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  const proxies: Record<string, string> = {};
  for (const name of PROXY_VARIABLES) {
    const value = env[name];
    if (value) proxies[name] = name.toLowerCase() === 'no_proxy' ? value : guestProxyUrl(value);
  }
  return proxies;
}

/** The guest's proxy settings when everything goes through the run's egress proxy (which uses the host's). */
export const EGRESS_ENVIRONMENT: Readonly<Record<string, string>> = Object.fromEntries(
  ['http_proxy', 'https_proxy'].flatMap((name) => [name, name.toUpperCase()]).map((name) => [name, EGRESS_URL]),
);

/** The network a run's options ask for (the default when they say nothing). */
export const networkOf = (options: { network?: NetworkChoice }): NetworkChoice => options.network ?? DEFAULT_NETWORK;

/** The guest's proxy settings: the egress proxy's (filtered), the host's own (full), none (none). */
export function guestNetworkEnvironment(network: NetworkChoice, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  if (network.mode === 'none') return {};
  return network.mode === 'full' ? guestProxyEnvironment(env) : { ...EGRESS_ENVIRONMENT };
}
