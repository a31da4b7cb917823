import { describe, expect, test } from 'vitest';
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
