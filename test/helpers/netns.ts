import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { execa } from 'execa';

/*
 * Network namespaces a test makes itself (root only), never touching the host's own network: a
 * `server` namespace and a `client` namespace joined by a veth pair created inside them, each end
 * with the addresses the test gives. Servers run in either; boxbuild runs in `client`.
 */

/** Whether this process may make network namespaces (root with iproute2). */
export const canMakeNamespaces = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;

const ip = (args: string[]) => execa('ip', args);

export class TestNamespaces {
  readonly server = `bbt${process.pid}s`;
  readonly client = `bbt${process.pid}c`;
  private readonly servers: ChildProcess[] = [];

  /** Makes both namespaces and the link between them: `serverAddresses` on the server's end, `clientAddresses` on the client's (CIDR). */
  async create(serverAddresses: string[], clientAddresses: string[]): Promise<void> {
    const [serverEnd, clientEnd] = [`bbv${process.pid}s`, `bbv${process.pid}c`];
    await ip(['netns', 'add', this.server]);
    await ip(['netns', 'add', this.client]);
    await ip(['-n', this.server, 'link', 'add', serverEnd, 'type', 'veth', 'peer', 'name', clientEnd, 'netns', this.client]);
    for (const [ns, end, addresses] of [[this.server, serverEnd, serverAddresses], [this.client, clientEnd, clientAddresses]] as const) {
      for (const address of addresses) await ip(['-n', ns, 'addr', 'add', address, 'dev', end]);
      await ip(['-n', ns, 'link', 'set', end, 'up']);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
  }

  /**
   * Gives namespace `ns` an address (CIDR) on a link without a carrier (a veth whose peer stays down,
   * like a bridge with nothing attached): the host still reaches it, through its local routes.
   */
  async addUnplugged(ns: string, address: string): Promise<void> {
    const [end, peer] = [`bbu${process.pid}a`, `bbu${process.pid}b`];
    await ip(['-n', ns, 'link', 'add', end, 'type', 'veth', 'peer', 'name', peer]);
    await ip(['-n', ns, 'addr', 'add', address, 'dev', end]);
    await ip(['-n', ns, 'link', 'set', end, 'up']);
  }

  /**
   * Starts an HTTP server in namespace `ns` on each of `addresses` (port `port`), answering every
   * request with the URL asked for and the address that answered; resolves once it listens.
   */
  async serve(ns: string, addresses: string[], port: number): Promise<void> {
    const program = `const http = require('node:http');
let left = ${addresses.length};
for (const address of ${JSON.stringify(addresses)}) {
  http.createServer((req, res) => res.end('asked ' + address + ' for ' + req.url + '\\n')).listen(${port}, address, () => --left || console.log('ready'));
}`;
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', program], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.servers.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`the server in ${ns} exited (${code})`)));
    });
  }

  /** Ends the servers (by their id) and removes both namespaces (and with them the link). */
  async remove(): Promise<void> {
    for (const child of this.servers) child.kill('SIGKILL');
    await Promise.all(this.servers.map((child) => (child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined)));
    for (const ns of [this.client, this.server]) await execa('ip', ['netns', 'delete', ns], { reject: false });
  }
}
