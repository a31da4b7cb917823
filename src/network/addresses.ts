import { createSocket } from 'node:dgram';
import { BlockList, isIP } from 'node:net';

/*
 * The addresses the filtered network never reaches (unless `allow=` names them): whatever is the
 * host itself or next to it rather than on the internet. Private LAN ranges stay reachable
 * (corporate mirrors live there), except the host's own addresses on them.
 */

const RANGES: [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', 'an unspecified address (this host)'],
  ['127.0.0.0', 8, 'ipv4', "the host's loopback"],
  ['169.254.0.0', 16, 'ipv4', 'link-local (cloud metadata services answer there)'],
  ['100.100.100.200', 32, 'ipv4', 'a cloud metadata service'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved or broadcast'],
  ['::', 128, 'ipv6', 'an unspecified address (this host)'],
  ['::1', 128, 'ipv6', "the host's loopback"],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fd00:ec2::254', 128, 'ipv6', 'a cloud metadata service'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

const blocked = RANGES.map(([network, prefix, type, why]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, type);
  return { list, type, why };
});

/** An IPv6 address's 16 bytes (no zone); undefined when it is not one. */
function ipv6Bytes(address: string): number[] | undefined {
  if (isIP(address) !== 6) return undefined;
  let text = address.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (part?: string) => (part ? part.split(':').map((group) => parseInt(group, 16)) : []);
  const front = groups(head);
  const back = groups(tail);
  const all = tail === undefined ? front : [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
  return all.flatMap((group) => [group >> 8, group & 0xff]);
}

/**
 * The IPv4 address an IPv6 address stands for, when it embeds one that reaches the same host:
 * IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d).
 */
function embeddedIPv4(address: string): string | undefined {
  const bytes = ipv6Bytes(address);
  if (!bytes) return undefined;
  const prefix = bytes.slice(0, 12).join(',');
  const mapped = prefix === '0,0,0,0,0,0,0,0,0,0,255,255';
  const compatible = prefix === '0,0,0,0,0,0,0,0,0,0,0,0' && bytes.slice(12).some((byte, i) => byte !== 0 && (i < 3 || byte > 1));
  const nat64 = prefix === '0,100,255,155,0,0,0,0,0,0,0,0';
  return mapped || compatible || nat64 ? bytes.slice(12).join('.') : undefined;
}

/** One spelling per address: IPv4 as is, IPv6 as its bytes (so that ::1 and 0:0::1 are one). */
function canonical(address: string): string {
  return ipv6Bytes(address)?.map((byte) => byte.toString(16).padStart(2, '0')).join('') ?? address;
}

/**
 * Whether `address` is one of the host's own: the kernel lets a socket bind to it. Listing the
 * interfaces is not enough: Node lists only interfaces that are up with a carrier, while an address
 * on one without (a bridge with nothing attached, a link that just came up) is reached all the same,
 * through the kernel's local routes. Any error but "not available here" counts as the host's own.
 */
export function isHostAddress(address: string): Promise<boolean> {
  const family = isIP(address);
  if (family === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
    const done = (own: boolean) => {
      socket.close();
      resolve(own);
    };
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code !== 'EADDRNOTAVAIL'));
    socket.bind(0, address, () => done(true));
  });
}

/** Why the filtered network does not reach `address`, by its range; undefined when no range forbids it. */
export function forbiddenRange(address: string): string | undefined {
  const v4 = embeddedIPv4(address);
  if (v4) return forbiddenRange(v4);
  const type = isIP(address) === 4 ? 'ipv4' : isIP(address) === 6 ? 'ipv6' : undefined;
  if (!type) return 'not an IP address';
  return blocked.find((entry) => entry.type === type && entry.list.check(address, type))?.why;
}

/** Why the filtered network does not reach `address` (its range, or the host's own); undefined when it does. */
export async function forbiddenBecause(address: string): Promise<string | undefined> {
  const range = forbiddenRange(address);
  if (range) return range;
  return (await isHostAddress(embeddedIPv4(address) ?? address)) ? "one of the host's own addresses" : undefined;
}

/** Whether two spellings name one address (an allow= entry and a resolved address). */
export const sameAddress = (a: string, b: string) => canonical(embeddedIPv4(a) ?? a) === canonical(embeddedIPv4(b) ?? b);
