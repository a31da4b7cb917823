import { isIP } from 'node:net';
import { usageError } from '../errors.js';

/*
 * What the guest's network reaches (--network, the config key `network`, the library's `network`):
 *   filtered (default)  the internet through boxbuild's egress proxy only (src/network/egress.ts)
 *   full                everything QEMU user networking reaches, the host's loopback included
 *   none                no network device at all
 * and `allow=HOST:PORT` opens one host port of the filtered network the proxy would refuse.
 */

export type NetworkMode = 'filtered' | 'full' | 'none';

/** A host (name or address) and port, as `allow=` names it. */
export interface Endpoint {
  host: string;
  port: number;
}

export interface NetworkChoice {
  mode: NetworkMode;
  /** Endpoints of the filtered network the egress proxy reaches even when it would refuse their address. */
  allow: Endpoint[];
}

/** One word of --network: a mode, or `allow=HOST:PORT[,HOST:PORT]...`. */
export type NetworkWord = NetworkMode | `allow=${string}`;

export const DEFAULT_NETWORK: NetworkChoice = { mode: 'filtered', allow: [] };

const MODES: readonly string[] = ['filtered', 'full', 'none'];

/** `HOST:PORT` or `[IPV6]:PORT`. */
export function parseEndpoint(text: string, where: string): Endpoint {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s/]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2];
  if (!match || !host || port < 1 || port > 65535 || (match[1] !== undefined && isIP(host) !== 6)) {
    throw usageError(`${where}: "allow=${text}" is not HOST:PORT (e.g. allow=127.0.0.1:8080, allow=[::1]:8080)`);
  }
  return { host: host.toLowerCase(), port };
}

/**
 * The network a run asks for: true (the default network) or false (none) as --no-network and
 * older configs say it, or --network words, each a mode or comma-separated `allow=HOST:PORT` items.
 */
export function parseNetwork(value: boolean | string | readonly string[] | undefined, where = '--network'): NetworkChoice {
  if (value === undefined || value === true) return DEFAULT_NETWORK;
  if (value === false) return { mode: 'none', allow: [] };
  const modes = new Set<string>();
  const allow: Endpoint[] = [];
  for (const word of typeof value === 'string' ? [value] : value) {
    let allowing = false;
    for (const item of word.split(',')) {
      if (MODES.includes(item)) {
        modes.add(item);
        allowing = false;
      } else if (item.startsWith('allow=') || (allowing && item !== '')) {
        allow.push(parseEndpoint(item.replace(/^allow=/, ''), where));
        allowing = true;
      } else {
        throw usageError(`${where}: "${item}" is not a network: filtered (the default), full, none, or allow=HOST:PORT`);
      }
    }
  }
  if (modes.size > 1) throw usageError(`${where}: ${[...modes].join(' and ')} conflict: give one network mode`);
  const mode = (modes.values().next().value ?? 'filtered') as NetworkMode;
  if (allow.length > 0 && mode !== 'filtered') {
    throw usageError(`${where}: allow= opens a host port of the filtered network; --network ${mode} ${mode === 'full' ? 'reaches every port already' : 'has no network'}`);
  }
  return { mode, allow };
}

/** The words that give a choice back (`boxbuild config`, messages). */
export function networkWords(choice: NetworkChoice): string {
  const allow = choice.allow.map(({ host, port }) => `${isIP(host) === 6 ? `[${host}]` : host}:${port}`);
  return allow.length ? `allow=${allow.join(',')}` : choice.mode;
}
