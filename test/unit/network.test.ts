import { describe, expect, test } from 'vitest';
import { cachePath } from '../../src/package-cache/proxy.js';
import { guestProxyEnvironment, guestProxyUrl } from '../../src/runner/network.js';

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
  });
});
