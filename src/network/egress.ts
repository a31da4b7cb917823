import { lookup } from 'node:dns/promises';
import { rm } from 'node:fs/promises';
import { type ClientRequest, type IncomingMessage, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import { type Socket, connect, isIP } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { getProxyForUrl } from 'proxy-from-env';
import { type Fetch, PARTIAL_HEADERS, type PackageCache, endToEnd } from '../package-cache/cache.js';
import { settledWithin } from '../util/abort.js';
import { forbiddenBecause, sameAddress } from './addresses.js';
import type { Endpoint } from './mode.js';

/*
 * A run's egress proxy: the guest's only way out of a filtered network (and the package cache's way
 * in either network). An HTTP/1.1 proxy (absolute-URI requests, and CONNECT tunnels to port 443) on
 * a Unix socket in the run's private directory, which the guest reaches through QEMU's guest forward
 * (src/qemu/egress-link.ts) and no one else does. It resolves each destination itself, refuses the
 * addresses of the host and next to it (src/network/addresses.ts) unless `allow=` names them, and
 * connects to the address it checked (no second lookup to rebind). Through the host's own proxy
 * (http_proxy, https_proxy, no_proxy) when the host has one, as the host's own downloads go.
 */

export interface EgressOptions {
  /**
   * Where to listen: a Unix socket (a run's), or 127.0.0.1 for a host-side tool that cannot use
   * one (debootstrap making a box), which then must give the token as the proxy password.
   */
  listen: { socket: string } | { token: string };
  /** `filtered`: refuse the host's addresses and tunnels to ports but 443; `full`: go anywhere. */
  mode: 'filtered' | 'full';
  allow: Endpoint[];
  /** The package cache of a KIWI build. */
  cache?: PackageCache;
  /** Told once per destination refused (--verbose). */
  onRefused?: (line: string) => void;
}

export interface EgressProxy {
  /** The proxy's URL for a host-side tool (`listen.token`): http://boxbuild:TOKEN@127.0.0.1:PORT. */
  readonly url?: string;
  /** Bytes of answers and tunnels passed to the guest (not counting packages the cache handled). */
  readonly passedBytes: number;
  close(): Promise<void>;
}

/** A destination the filtered network does not reach; the guest gets the message. */
class Refused extends Error {}

const CONNECT_TIMEOUT_MS = 30_000;

/** How long closing waits for the guest forward's connectors to see the end and exit. */
const CLOSE_GRACE_MS = 2000;

/** Connections of the guest at once (each holds two processes of the guest forward); more are closed at once. */
const MAX_GUEST_CONNECTIONS = 256;

/** Bodies of archive indexes read for the package cache; a bigger one passes without being read. */
const MAX_INDEX_BODY = 128 << 20;

const bare = (host: string) => host.replace(/^\[|\]$/g, '');
const hostPort = (host: string, port: number) => `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;

async function addressesOf(host: string): Promise<string[]> {
  return isIP(host) ? [host] : (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);
}

/** Opens a TCP connection to the first of `addresses` that answers. */
async function connectTo(addresses: string[], port: number): Promise<Socket> {
  let failure: Error = new Error('no address');
  for (const address of addresses) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ host: address, port, timeout: CONNECT_TIMEOUT_MS });
        socket.once('connect', () => resolve(socket.setTimeout(0)));
        socket.once('timeout', () => socket.destroy(new Error(`connecting to ${hostPort(address, port)} timed out`)));
        socket.once('error', reject);
      });
    } catch (error) {
      failure = error as Error;
    }
  }
  throw failure;
}

/** The Proxy-Authorization header for the host's proxy, when its URL has credentials. */
function proxyAuthorization(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  return { 'proxy-authorization': `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}` };
}

export async function startEgressProxy(options: EgressOptions): Promise<EgressProxy> {
  const { cache } = options;
  let passedBytes = 0;
  const refusedOnce = new Set<string>();
  const guests = new Set<Socket>();
  const upstreams = new Set<Socket>();
  const track = (socket: Socket) => {
    upstreams.add(socket);
    socket.once('close', () => upstreams.delete(socket));
    return socket;
  };

  /** Whether an allow= entry names host:port (by name, or by one of its addresses). */
  const allowed = async (host: string, addresses: string[], port: number) => {
    for (const entry of options.allow.filter((candidate) => candidate.port === port)) {
      if (entry.host === host.toLowerCase()) return true;
      const named = await addressesOf(entry.host).catch(() => []);
      if (named.some((a) => addresses.some((b) => sameAddress(a, b)))) return true;
    }
    return false;
  };

  /**
   * The addresses a connection to host:port may use, in order; throws Refused. `viaProxy`: the
   * host's proxy connects, so a name this host cannot resolve is its to resolve.
   */
  const destinations = async (host: string, port: number, tunnel: boolean, viaProxy: boolean): Promise<string[]> => {
    let addresses: string[];
    try {
      addresses = await addressesOf(host);
    } catch (error) {
      if (viaProxy) return [];
      throw new Error(`cannot resolve ${host}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
    }
    if (options.mode === 'full' || (await allowed(host, addresses, port))) return addresses;
    if (tunnel && port !== 443) throw new Refused(`${hostPort(host, port)}: tunnels (CONNECT) go to port 443 only; --network allow=${hostPort(host, port)} opens this one`);
    const why = await Promise.all(addresses.map((address) => forbiddenBecause(address)));
    const reachable = addresses.filter((_, index) => why[index] === undefined);
    if (reachable.length === 0) {
      throw new Refused(`${hostPort(host, port)}${isIP(host) ? '' : ` (${addresses[0]})`} is ${why[0]}, which the guest's network does not reach; --network allow=${hostPort(host, port)} opens it`);
    }
    return reachable;
  };

  /** A request to `url` on its way upstream, its Host header the URL's own. */
  const openRequest = async (url: URL, method: string, headers: Record<string, string | string[]>): Promise<ClientRequest> => {
    const port = Number(url.port || 80);
    const proxy = getProxyForUrl(url.href);
    const addresses = await destinations(bare(url.hostname), port, false, proxy !== '');
    const outgoing = { method, headers: { ...headers, host: url.host } };
    if (proxy) {
      // The host's proxy gets the request as a proxy does: the absolute URL.
      const via = new URL(proxy);
      const socket = track(await connectTo(await addressesOf(bare(via.hostname)), Number(via.port || 80)));
      return httpRequest({ ...outgoing, headers: { ...outgoing.headers, ...proxyAuthorization(via) }, path: url.href, createConnection: () => socket });
    }
    const socket = track(await connectTo(addresses, port));
    return httpRequest({ ...outgoing, path: `${url.pathname}${url.search}`, createConnection: () => socket });
  };

  const answerOf = (outgoing: ClientRequest) => new Promise<IncomingMessage>((resolve, reject) => outgoing.on('response', resolve).on('error', reject));

  const fetchFor =
    (url: URL): Fetch =>
    async (method, headers) => {
      const outgoing = await openRequest(url, method, headers);
      outgoing.end();
      return answerOf(outgoing);
    };

  /** Any other request: passed on, both bodies streamed; a Release file or package index of a build's mirror is read on the way. */
  const passThrough = async (url: URL, request: IncomingMessage, response: ServerResponse) => {
    const reading = cache?.reads(url) && request.method === 'GET';
    const headers = endToEnd(request.headers);
    if (reading) for (const name of PARTIAL_HEADERS) delete headers[name]; // the whole body, to read it
    const outgoing = await openRequest(url, request.method ?? 'GET', headers);
    request.pipe(outgoing);
    const answer = await answerOf(outgoing);
    const body: Buffer[] | undefined = reading && answer.statusCode === 200 ? [] : undefined;
    response.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
    // The index is learnt before the guest has its last byte, so that the packages it asks for next are vouched for.
    await pipeline(
      answer,
      async function* (source: AsyncIterable<Buffer>) {
        let size = 0;
        let held: Buffer | undefined;
        for await (const chunk of source) {
          passedBytes += chunk.length;
          size += chunk.length;
          if (body && size <= MAX_INDEX_BODY) body.push(chunk);
          if (held) yield held;
          held = chunk;
        }
        if (body && answer.complete && size <= MAX_INDEX_BODY) cache?.learn(url, Buffer.concat(body));
        if (held) yield held;
      },
      response,
    );
  };

  const refusal = (error: unknown): { status: number; text: string } => {
    if (error instanceof Refused) {
      if (!refusedOnce.has(error.message)) {
        refusedOnce.add(error.message);
        options.onRefused?.(`egress proxy refused ${error.message}`);
      }
      return { status: 403, text: `boxbuild: ${error.message}\n` };
    }
    return { status: 502, text: `boxbuild egress proxy: ${(error as Error).message}\n` };
  };

  /** With a TCP listener, only a client that knows the token: no other local user. */
  const expected = 'token' in options.listen ? `Basic ${Buffer.from(`boxbuild:${options.listen.token}`).toString('base64')}` : undefined;
  const authorized = (request: IncomingMessage) => !expected || request.headers['proxy-authorization'] === expected;
  const UNAUTHORIZED = 'HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm="boxbuild"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n';

  const server = createServer({ requestTimeout: 0 }, (request, response) => {
    if (!authorized(request)) {
      response.socket?.end(UNAUTHORIZED);
      return;
    }
    const handled = (async () => {
      let url: URL;
      try {
        url = new URL(request.url ?? '');
        if (url.protocol !== 'http:') throw new Error('not http');
      } catch {
        response.writeHead(400, { 'content-type': 'text/plain' }).end('boxbuild egress proxy: only absolute http:// URLs, and CONNECT for https:// (this is a proxy that does no TLS itself)\n');
        return;
      }
      if (cache?.serves(url) && (request.method === 'GET' || request.method === 'HEAD')) await cache.answer(url, request, response, fetchFor(url));
      else await passThrough(url, request, response);
    })();
    handled.catch((error: unknown) => {
      if (response.headersSent) return response.destroy();
      const { status, text } = refusal(error);
      response.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) }).end(text);
    });
  });

  /** CONNECT host:port: a tunnel to a checked address, or through the host's HTTPS proxy. */
  const tunnel = async (request: IncomingMessage, client: Socket, head: Buffer) => {
    const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s/]+):(\d{1,5})$/.exec(request.url ?? '');
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535) {
      client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      return;
    }
    const host = bare(match[1]!);
    const target = hostPort(host, port);
    const proxy = getProxyForUrl(`https://${target}/`);
    const addresses = await destinations(host, port, true, proxy !== '');
    const via = proxy ? new URL(proxy) : undefined;
    const upstream = track(via ? await connectTo(await addressesOf(bare(via.hostname)), Number(via.port || 80)) : await connectTo(addresses, port));
    if (via) {
      const auth = Object.entries(proxyAuthorization(via)).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      upstream.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`); // its answer goes to the guest as it is
    } else {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    }
    upstream.write(head);
    upstream.on('data', (chunk: Buffer) => (passedBytes += chunk.length));
    const close = () => {
      upstream.destroy();
      client.destroy();
    };
    upstream.on('error', close).on('close', close);
    client.on('error', close).on('close', close);
    upstream.pipe(client);
    client.pipe(upstream);
  };

  server.on('connect', (request: IncomingMessage, client: Socket, head: Buffer) => {
    client.on('error', () => {});
    if (!authorized(request)) {
      client.end(UNAUTHORIZED);
      return;
    }
    tunnel(request, client, head).catch((error: unknown) => {
      if (!client.writable) return client.destroy();
      const { status, text } = refusal(error);
      client.end(`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : 'Bad Gateway'}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
    });
  });
  server.on('connection', (socket: Socket) => {
    if (guests.size >= MAX_GUEST_CONNECTIONS) return socket.destroy();
    guests.add(socket);
    socket.once('close', () => guests.delete(socket));
  });

  const { listen } = options;
  if ('socket' in listen) await rm(listen.socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('socket' in listen) server.listen(listen.socket, resolve);
    else server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  return {
    url: 'token' in listen && typeof address === 'object' && address ? `http://boxbuild:${listen.token}@127.0.0.1:${address.port}` : undefined,
    get passedBytes() {
      return passedBytes;
    },
    close: async () => {
      server.close();
      for (const socket of upstreams) socket.destroy();
      // Each connection's end reaches its connector, which then exits: none outlives the run.
      const ended = [...guests].map((socket) => new Promise((resolve) => socket.once('close', resolve).end()));
      await settledWithin(Promise.all(ended), CLOSE_GRACE_MS);
      for (const socket of guests) socket.destroy();
    },
  };
}
