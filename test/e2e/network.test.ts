import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated } from '../helpers/box-cli.js';
import type { CliResult } from '../helpers/cli.js';
import { CLI, TEST_CACHE } from '../helpers/env.js';
import { TestNamespaces, canMakeNamespaces } from '../helpers/netns.js';
import { tempDir } from '../helpers/temp.js';

/** An HTTP server on 127.0.0.1 that answers every request with the URL it was asked for (proxies get absolute URLs); it counts them. */
async function echoServer(): Promise<{ server: Server; port: number; asked: string[] }> {
  const asked: string[] = [];
  const server = createServer((request, response) => asked.push(request.url!) && response.end(`asked for ${request.url}\n`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, asked };
}

const EGRESS = 'http://10.0.2.100:3128';

describe('the guest network', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  beforeAll(async () => (echo = await echoServer()));
  afterAll(() => echo.server.close());

  const exec = (script: string, ...options: string[]) => runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', ...options, '--', 'sh', '-c', script]);
  /** What the guest gets of the host's 127.0.0.1:PORT, straight (as 10.0.2.2) and through the proxy. */
  const probeHost = () => `nc 10.0.2.2 ${echo.port} </dev/null && echo direct: reached || echo direct: refused
wget -q -O- http://127.0.0.1:${echo.port}/through-proxy 2>&1 || echo proxy: refused`;

  test("filtered (the default): the host's loopback is out of reach, straight and through the proxy; no DNS; booted and restored", async () => {
    const script = `echo "$http_proxy $HTTPS_PROXY [$no_proxy]"; ${probeHost()}; nslookup deb.debian.org 10.0.2.3 >/dev/null 2>&1 || echo dns: none`;
    const expected = new RegExp(`^${EGRESS} ${EGRESS} \\[\\]\ndirect: refused\n(?:.*403 Forbidden\n)?proxy: refused\ndns: none$`);
    expect((await exec(script, '--cold')).stdout).toMatch(expected);
    expect((await exec(script)).stdout).toMatch(expected); // saves the booted VM when no state exists yet
    const warm = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-v', '--', 'sh', '-c', script]);
    expect(warm.stderr).toContain('guest agent ready (restored)');
    expect(warm.stderr).toContain(`egress proxy refused 127.0.0.1:${echo.port} is the host's loopback, which the guest's network does not reach; --network allow=127.0.0.1:${echo.port} opens it`);
    expect(warm.stdout).toMatch(expected);
    expect(echo.asked).toEqual([]);
  });

  test('--network allow=127.0.0.1:PORT opens that port through the proxy, and nothing else; restored', async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-v', '--network', `allow=127.0.0.1:${echo.port}`, '--', 'sh', '-c', `${probeHost()}; wget -q -O- http://127.0.0.1:${echo.port + 1}/ 2>&1 || echo other: refused`]);
    expect(result.stderr).toContain('guest agent ready (restored)'); // the same VM as the default network's
    expect(result.stdout).toMatch(/^direct: refused\nasked for \/through-proxy\n(?:.*\n)?other: refused$/);
  });

  test("a guest download through the proxy: Debian's mirror by plain HTTP; a tunnel (CONNECT) to its port 443, not to port 22", async () => {
    const connect = (port: number) => `(printf 'CONNECT deb.debian.org:${port} HTTP/1.1\\r\\n\\r\\n'; sleep 3) | timeout 10 nc 10.0.2.100 3128 | head -n 1 | tr -d '\\r'`;
    const result = await exec(`wget -q -O- http://deb.debian.org/debian/dists/bookworm/InRelease | head -n 1; ${connect(443)}; ${connect(22)}`);
    expect(result.stdout).toBe('-----BEGIN PGP SIGNED MESSAGE-----\nHTTP/1.1 200 Connection Established\nHTTP/1.1 403 Forbidden');
  });

  test("the host's own proxy settings stay with the egress proxy, which goes through them", async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'echo "$http_proxy [$NO_PROXY]"; wget -q -O- http://boxbuild.invalid/through-host-proxy'], {
      env: { http_proxy: `http://127.0.0.1:${echo.port}`, NO_PROXY: 'localhost,.internal' },
    });
    expect(result.stdout).toBe(`${EGRESS} []\nasked for http://boxbuild.invalid/through-host-proxy`);
    expect(result.exitCode).toBe(0);
  });

  test('--network full: the host as 10.0.2.2 and a DNS server, booted and restored', async () => {
    const script = `cat /etc/resolv.conf; wget -qO- http://10.0.2.2:${echo.port}/file`;
    const expected = `nameserver 10.0.2.3\nasked for /file`;
    expect((await exec(script, '--network', 'full', '--cold')).stdout).toBe(expected);
    expect((await exec(script, '--network', 'full')).stdout).toBe(expected);
    const warm = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-v', '--network', 'full', '--', 'sh', '-c', script]);
    expect(warm.stderr).toContain('guest agent ready (restored)');
    expect(warm.stdout).toBe(expected);
  });

  test("--network full: the host's proxy settings reach the guest, a proxy on the host's loopback as 10.0.2.2", async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--network', 'full', '--', 'sh', '-c', 'echo "$http_proxy $NO_PROXY"; wget -qO- http://boxbuild.invalid/through-proxy'], {
      env: { http_proxy: `http://127.0.0.1:${echo.port}`, NO_PROXY: 'localhost,.internal' },
    });
    expect(result.stdout).toBe(`http://10.0.2.2:${echo.port} localhost,.internal\nasked for http://boxbuild.invalid/through-proxy`);
    expect(result.exitCode).toBe(0);
  });

  test.each([['--no-network'], ['--network', 'none']])('%s: no network device at all', async (...options) => {
    const result = await exec(`ls /sys/class/net; echo "[$http_proxy]"; wget -qO- http://10.0.2.2:${echo.port}/file || echo unreachable`, ...options);
    expect(result.stdout).toBe('lo\n[]\nunreachable');
  });

  test('--no-network cannot go with the SSH channel', async () => {
    const result = await exec('true', '--no-network', '--channel', 'ssh');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^boxbuild: error: --channel ssh reaches the guest over its network/);
  });

  test.each([
    [['--network', 'open'], '--network: "open" is not a network: filtered (the default), full, none, or allow=HOST:PORT'],
    [['--network', 'full', '--network', 'allow=127.0.0.1:80'], '--network: allow= opens a host port of the filtered network; --network full reaches every port already'],
    [['--network', 'allow=127.0.0.1'], '--network: "allow=127.0.0.1" is not HOST:PORT (e.g. allow=127.0.0.1:8080, allow=[::1]:8080)'],
  ])('%j: a usage error before anything starts', async (options, message) => {
    const result = await exec('true', ...options);
    expect([result.exitCode, result.stderr]).toEqual([2, `boxbuild: error: ${message}`]);
  });
});

/**
 * Addresses next to the host that are not its loopback: boxbuild runs in a network namespace of the
 * test's own, linked to another (the "LAN") where servers answer on a link-local address and on a
 * private one; the client's own end has a private address too.
 */
describe.skipIf(!canMakeNamespaces)('the guest network beside the host (network namespaces of the test)', () => {
  const spaces = new TestNamespaces();
  const PORT = 8080;
  beforeAll(async () => {
    await spaces.create(['169.254.77.1/16', '192.168.77.1/24'], ['169.254.77.2/16', '192.168.77.2/24']);
    await spaces.serve(spaces.server, ['169.254.77.1', '192.168.77.1'], PORT);
    await spaces.addUnplugged(spaces.client, '192.168.78.2/24');
    await spaces.serve(spaces.client, ['192.168.77.2', '192.168.78.2'], PORT);
  });
  afterAll(() => spaces.remove());

  /** boxbuild exec in the client namespace, with a private TMPDIR checked for leftovers. */
  async function execThere(script: string, ...options: string[]): Promise<CliResult> {
    const tmp = tempDir('tmp-');
    const result = await execa('ip', ['netns', 'exec', spaces.client, process.execPath, CLI, 'exec', '--box', 'debian', '--accel', 'tcg', '-v', ...options, '--', 'sh', '-c', script], {
      reject: false,
      stdin: 'ignore',
      env: { BOXBUILD_CACHE_DIR: TEST_CACHE, TMPDIR: tmp },
    });
    expectNoLeftovers(tmp);
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  const fetch = (name: string, address: string) => `wget -q -O- http://${address}:${PORT}/${name} 2>/dev/null || echo ${name}: refused`;
  const script = [fetch('link-local', '169.254.77.1'), fetch('lan', '192.168.77.1'), fetch('own', '192.168.77.2'), fetch('unplugged', '192.168.78.2')].join('; ');

  test("filtered: a link-local server and the host's own addresses (also without a carrier) are refused, a private network's server is reached", async () => {
    // The client's own addresses: one on its link to the LAN, one on a link without a carrier.
    const result = await execThere(script);
    expect(result.stdout, result.stderr).toBe('link-local: refused\nasked 192.168.77.1 for /lan\nown: refused\nunplugged: refused');
    expect(result.stderr).toContain(`egress proxy refused 169.254.77.1:${PORT} is link-local (cloud metadata services answer there)`);
    expect(result.stderr).toContain(`egress proxy refused 192.168.77.2:${PORT} is one of the host's own addresses`);
    expect(result.stderr).toContain(`egress proxy refused 192.168.78.2:${PORT} is one of the host's own addresses`);
  });

  test('--network allow=169.254.77.1:PORT reaches the link-local server', async () => {
    const result = await execThere(script, '--network', `allow=169.254.77.1:${PORT}`);
    expect(result.stdout).toBe('asked 169.254.77.1 for /link-local\nasked 192.168.77.1 for /lan\nown: refused\nunplugged: refused');
  });

  test('--network full reaches all three, straight', async () => {
    const result = await execThere(script, '--network', 'full');
    expect(result.stdout).toBe('asked 169.254.77.1 for /link-local\nasked 192.168.77.1 for /lan\nasked 192.168.77.2 for /own\nasked 192.168.78.2 for /unplugged');
  });
});
