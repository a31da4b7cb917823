import { createConnection, createServer } from 'node:net';

/*
 * The egress proxy inside a container's network namespace (started there by nsenter --net, see
 * network.ts): listens on 127.0.0.1:PORT, which only that namespace sees, and joins each connection
 * to the proxy's Unix socket in the run's private directory. As the VM's connector does, it passes
 * the proxy's end of a connection on and not the build's half-close (HTTP needs none). It says
 * "listening" on stdout once it does, and ends when its stdin closes (boxbuild is gone).
 */

const [socketPath, port] = process.argv.slice(2);
const server = createServer((build) => {
  const proxy = createConnection(socketPath!);
  build.pipe(proxy, { end: false });
  proxy.pipe(build);
  const close = () => (build.destroy(), proxy.destroy());
  for (const side of [build, proxy]) side.on('error', close).on('close', close);
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\n'));
process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();
