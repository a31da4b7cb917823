import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';

/** An HTTP server on 127.0.0.1 that answers every request with the URL it was asked for (proxies get absolute URLs). */
async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => response.end(`asked for ${request.url}\n`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

describe('the guest network (QEMU user networking)', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => ({ server, port } = await echoServer()));
  afterAll(() => server.close());

  const exec = (script: string, ...options: string[]) => runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', ...options, '--', 'sh', '-c', script]);

  test('reaches the host as 10.0.2.2 and has a DNS server, booted and restored', async () => {
    const script = `cat /etc/resolv.conf; wget -qO- http://10.0.2.2:${port}/file`;
    const expected = `nameserver 10.0.2.3\nasked for /file`;
    expect((await exec(script, '--cold')).stdout).toBe(expected);
    expect((await exec(script)).stdout).toBe(expected); // saves the booted VM when no state exists yet
    const warm = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-v', '--', 'sh', '-c', script]);
    expect(warm.stderr).toContain('guest agent ready (restored)');
    expect(warm.stdout).toBe(expected);
  });

  test("the host's proxy settings reach the guest, a proxy on the host's loopback as 10.0.2.2", async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'echo "$http_proxy $NO_PROXY"; wget -qO- http://boxbuild.invalid/through-proxy'], {
      env: { http_proxy: `http://127.0.0.1:${port}`, NO_PROXY: 'localhost,.internal' },
    });
    expect(result.stdout).toBe(`http://10.0.2.2:${port} localhost,.internal\nasked for http://boxbuild.invalid/through-proxy`);
    expect(result.exitCode).toBe(0);
  });

  test('--no-network: no network device at all', async () => {
    const result = await exec(`ls /sys/class/net; wget -qO- http://10.0.2.2:${port}/file || echo unreachable`, '--no-network');
    expect(result.stdout).toBe('lo\nunreachable');
  });

  test('--no-network cannot go with the SSH channel', async () => {
    const result = await exec('true', '--no-network', '--channel', 'ssh');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^boxbuild: error: --channel ssh reaches the guest over its network/);
  });
});
