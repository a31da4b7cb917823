import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { asRoot, asUnprivilegedUser } from './runners.js';

/*
 * The host's services through the guest's network (issue 25, part 3), with boxbuild run by root and
 * by an unprivileged user: by default the guest reaches neither the host's loopback (straight, as
 * 10.0.2.2, or through the egress proxy) nor a cloud metadata address. test/e2e/network covers the
 * modes, link-local servers in namespaces and warm restores.
 */

const runners = process.getuid!() === 0 ? [asRoot, asUnprivilegedUser] : [asRoot];

describe.each(runners)("the host's services, boxbuild run by %s", (runner) => {
  let server: Server;
  let port: number;
  const asked: string[] = [];
  beforeAll(async () => {
    await runner.prepare();
    server = createServer((request, response) => asked.push(request.url!) && response.end('REACHED\n'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => server.close());

  test('are out of the guest’s reach by default', async () => {
    const script = `nc -w 5 10.0.2.2 ${port} </dev/null && echo direct: reached || echo direct: refused
wget -q -O- http://127.0.0.1:${port}/ 2>/dev/null || echo loopback: refused
wget -q -O- http://localhost:${port}/ 2>/dev/null || echo localhost: refused
wget -q -O- http://169.254.169.254/latest/meta-data/ 2>/dev/null || echo metadata: refused`;
    const result = await runner.run(['exec', '--box', 'debian', '-q', '--', 'sh', '-c', script]);
    expect(result.stdout).toBe('direct: refused\nloopback: refused\nlocalhost: refused\nmetadata: refused');
    expect(result.exitCode).toBe(0);
    expect(asked).toEqual([]);
  });
});
