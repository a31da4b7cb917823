import { describe, expect, test } from 'vitest';
import { cachePath } from '../../../src/package-cache/cache.js';
import { networkInterfaces } from 'node:os';
import { forbiddenBecause, forbiddenRange, isHostAddress, sameAddress } from '../../../src/network/addresses.js';
import { parseNetwork } from '../../../src/network/mode.js';
import { guestNetworkEnvironment, guestProxyEnvironment, guestProxyUrl } from '../../../src/network/guest.js';

describe('proxy settings for the guest', () => {
  test("a proxy on the host's loopback is the host's 10.0.2.2 in the guest", () => {
    expect(guestProxyUrl('http://127.0.0.1:3128')).toBe('http://10.0.2.2:3128');
    expect(guestProxyUrl('http://user:pw@localhost:3128/')).toBe('http://user:pw@10.0.2.2:3128/');
    expect(guestProxyUrl('http://[::1]:3128')).toBe('http://10.0.2.2:3128');
    expect(guestProxyUrl('http://proxy.example:3128')).toBe('http://proxy.example:3128');
    expect(guestProxyUrl('http://localhost.example:3128')).toBe('http://localhost.example:3128');
  });

  test('only proxy variables travel; no_proxy unchanged', () => {
    expect(guestProxyEnvironment({ HTTPS_PROXY: 'http://127.0.0.1:1', no_proxy: 'localhost', HOME: '/root' })).toEqual({ HTTPS_PROXY: 'http://10.0.2.2:1', no_proxy: 'localhost' });
  });

  test("filtered: the egress proxy's settings, not the host's; full: the host's; none: nothing", () => {
    const host = { http_proxy: 'http://127.0.0.1:3128', no_proxy: 'localhost' };
    const egress = 'http://10.0.2.100:3128';
    expect(guestNetworkEnvironment(parseNetwork(undefined), host)).toEqual({ http_proxy: egress, HTTP_PROXY: egress, https_proxy: egress, HTTPS_PROXY: egress });
    expect(guestNetworkEnvironment(parseNetwork('full'), host)).toEqual({ http_proxy: 'http://10.0.2.2:3128', no_proxy: 'localhost' });
    expect(guestNetworkEnvironment(parseNetwork(false), host)).toEqual({});
  });
});

describe('--network', () => {
  test('modes, booleans of older configs, allow= entries (repeated or comma-separated)', () => {
    expect(parseNetwork(undefined)).toEqual({ mode: 'filtered', allow: [] });
    expect(parseNetwork(true)).toEqual({ mode: 'filtered', allow: [] });
    expect(parseNetwork(false)).toEqual({ mode: 'none', allow: [] });
    expect(parseNetwork(['full'])).toEqual({ mode: 'full', allow: [] });
    expect(parseNetwork(['allow=127.0.0.1:8080', 'allow=Mirror.Local:80,[::1]:3142'])).toEqual({
      mode: 'filtered',
      allow: [
        { host: '127.0.0.1', port: 8080 },
        { host: 'mirror.local', port: 80 },
        { host: '::1', port: 3142 },
      ],
    });
    expect(parseNetwork('filtered,allow=169.254.1.1:80')).toEqual({ mode: 'filtered', allow: [{ host: '169.254.1.1', port: 80 }] });
  });

  test.each([
    [['bogus'], /"bogus" is not a network/],
    [['full', 'none'], /full and none conflict/],
    [['full', 'allow=127.0.0.1:1'], /allow= opens a host port of the filtered network; --network full reaches every port already/],
    [['allow=127.0.0.1'], /"allow=127.0.0.1" is not HOST:PORT/],
    [['allow=127.0.0.1:0'], /not HOST:PORT/],
    [['allow=127.0.0.1:65536'], /not HOST:PORT/],
    [['allow=[nothost]:1'], /not HOST:PORT/],
    [['allow=:80'], /not HOST:PORT/],
  ])('%j is refused: %s', (words, message) => {
    expect(() => parseNetwork(words)).toThrow(message);
  });
});

describe('addresses the filtered network does not reach', () => {
  test.each([
    ['127.0.0.1', "the host's loopback"],
    ['127.8.9.10', "the host's loopback"],
    ['0.0.0.0', 'an unspecified address (this host)'],
    ['169.254.169.254', 'link-local (cloud metadata services answer there)'],
    ['100.100.100.200', 'a cloud metadata service'],
    ['224.0.0.251', 'multicast'],
    ['255.255.255.255', 'reserved or broadcast'],
    ['::1', "the host's loopback"],
    ['0:0:0:0:0:0:0:1', "the host's loopback"],
    ['::', 'an unspecified address (this host)'],
    ['fe80::1', 'link-local'],
    ['fd00:ec2::254', 'a cloud metadata service'],
    ['::ffff:127.0.0.1', "the host's loopback"],
    ['::ffff:7f00:1', "the host's loopback"],
    ['::ffff:169.254.169.254', 'link-local (cloud metadata services answer there)'],
    ['::127.0.0.1', "the host's loopback"],
    ['64:ff9b::a9fe:a9fe', 'link-local (cloud metadata services answer there)'],
  ])('%s: %s', async (address, why) => {
    expect(forbiddenRange(address)).toBe(why);
    expect(await forbiddenBecause(address)).toBe(why);
  });

  test('the internet and private networks other than the host are reached', async () => {
    for (const address of ['203.0.113.80', '192.0.2.3', '10.1.2.3', '172.16.0.1', '192.168.1.1', '100.64.0.1', '2001:db8::1', 'fd12::1', '::ffff:203.0.113.80']) {
      expect(await forbiddenBecause(address), address).toBeUndefined();
    }
  });

  test("the host's own addresses (those of its interfaces here; addresses on interfaces without a carrier: test/e2e/network)", async () => {
    const own = Object.values(networkInterfaces()).flat().flatMap((info) => (info && !info.internal && info.family === 'IPv4' ? [info.address] : []));
    for (const address of own) {
      expect(await isHostAddress(address), address).toBe(true);
      expect(await forbiddenBecause(address), address).toBe("one of the host's own addresses");
      expect(await forbiddenBecause(`::ffff:${address}`), address).toBe("one of the host's own addresses");
    }
    expect(await isHostAddress('192.0.2.3')).toBe(false);
  });

  test('one address, several spellings', () => {
    expect(sameAddress('::1', '0::1')).toBe(true);
    expect(sameAddress('::ffff:127.0.0.1', '127.0.0.1')).toBe(true);
    expect(sameAddress('127.0.0.1', '127.0.0.2')).toBe(false);
  });
});

describe('the package cache', () => {
  test('keeps package files by URL and nothing else', () => {
    const path = (url: string) => cachePath('/c', new URL(url));
    expect(path('http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb')).toBe('/c/deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb');
    expect(path('http://10.0.2.2:3142/debian/pool/main/u/u/u_1%2Bb1_arm64.udeb')).toBe('/c/10.0.2.2_3142/debian/pool/main/u/u/u_1+b1_arm64.udeb');
    expect(path('http://deb.debian.org/debian/dists/bookworm/InRelease')).toBeUndefined();
    expect(path('https://deb.debian.org/debian/pool/x_1_all.deb')).toBeUndefined();
    expect(path('http://deb.debian.org/debian/pool/x_1_all.deb?token=1')).toBeUndefined();
    expect(path('http://deb.debian.org/debian/..%2f..%2fx_1_all.deb')).toBeUndefined();
    expect(path('http://deb.debian.org/debian/pool/.hidden_1_all.deb')).toBeUndefined();
    expect(path('http://deb.debian.org/debian/pool/bad%zz_1_all.deb')).toBeUndefined();
  });
});
