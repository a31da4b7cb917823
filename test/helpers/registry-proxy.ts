import { setTimeout as sleep } from 'node:timers/promises';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse, request as httpRequest } from 'node:http';
import { listenLocal } from './http.js';
import type { TestRegistry } from './registry.js';

/** How the proxy misbehaves; a test may change them while it runs. */
export interface ProxyFaults {
  /** The next successful GET of a blob larger than this (and matching `cutPath`) is cut after this many body bytes (its connection destroyed); then cleared. */
  cutBlobAfter?: number;
  cutPath?: RegExp;
  /**
   * Requests whose path matches are never answered: with `afterBytes`, they get the headers and that
   * many body bytes and then nothing; without, not even headers (they never reach the registry).
   */
  stall?: { path: RegExp; afterBytes?: number };
  /** Responses to requests whose path matches are sent at this rate. */
  slow?: { path: RegExp; bytesPerSecond: number };
}

/** A request through the proxy. */
export interface ProxyRequest {
  method: string;
  /** The request target: path and query. */
  path: string;
  /** The status sent; 0 while none was (a stalled request), 502 when the registry could not be reached. */
  status: number;
  /** Body bytes sent so far. */
  bytes: number;
  /** The Range header it asked with. */
  range?: string;
}

export interface RegistryProxy {
  host: string;
  url: string;
  faults: ProxyFaults;
  requests: ProxyRequest[];
  stop(): Promise<void>;
}

/** Connection headers of one hop, which a proxy does not pass on. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_HEADERS.has(name)));
}

/** Sends `body` on, within `limit` bytes and at `rate` bytes a second; true when it was all sent. */
async function relay(body: IncomingMessage, response: ServerResponse, record: ProxyRequest, limit: number, rate?: number): Promise<boolean> {
  const step = rate ? Math.max(1, Math.floor(rate / 20)) : Number.POSITIVE_INFINITY;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    for (let offset = 0; offset < chunk.length; offset += step) {
      const piece = chunk.subarray(offset, Math.min(offset + step, offset + limit - record.bytes));
      // Waiting for each write to be flushed keeps the pace of a slow client and of `rate`.
      await new Promise<void>((resolve, reject) => response.write(piece, (error) => (error ? reject(error) : resolve())));
      record.bytes += piece.length;
      if (record.bytes >= limit) return false;
      if (rate) await sleep((piece.length / rate) * 1000);
    }
  }
  return true;
}

/**
 * A reverse proxy on 127.0.0.1 in front of `target` that records every request and misbehaves as
 * `faults` say. The registry sees its own host in Host; the Location headers it answers with are
 * rewritten to name the proxy. WWW-Authenticate passes as it is: tokens come from the token server
 * directly.
 */
export async function startRegistryProxy(target: Pick<TestRegistry, 'host' | 'url'>, faults: ProxyFaults = {}): Promise<RegistryProxy> {
  const requests: ProxyRequest[] = [];
  let proxyUrl = '';

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const path = request.url ?? '/';
    const record: ProxyRequest = { method: request.method ?? 'GET', path, status: 0, bytes: 0, range: request.headers.range };
    requests.push(record);
    const stall = faults.stall?.path.test(path) ? faults.stall : undefined;
    if (stall && stall.afterBytes === undefined) return; // held until stop() ends its connection

    const upstream = httpRequest(`${target.url}${path}`, { method: record.method, headers: { ...endToEnd(request.headers), host: target.host }, agent: false });
    request.pipe(upstream);
    response.on('close', () => upstream.destroy());
    upstream.on('error', () => {
      if (response.headersSent) return void response.destroy();
      record.status = 502;
      response.writeHead(502).end();
    });
    upstream.on('response', (answer) => {
      record.status = answer.statusCode ?? 502;
      const headers = endToEnd(answer.headers);
      if (headers.location?.startsWith(target.url)) headers.location = proxyUrl + headers.location.slice(target.url.length);
      response.writeHead(record.status, headers);
      const blob = record.method === 'GET' && /\/blobs\/sha256:/.test(path) && record.status < 300;
      const cuts = blob && Number(answer.headers['content-length']) > (faults.cutBlobAfter ?? Number.POSITIVE_INFINITY) && (faults.cutPath?.test(path) ?? true);
      const cut = cuts ? faults.cutBlobAfter : undefined;
      if (cut !== undefined) delete faults.cutBlobAfter;
      const slow = faults.slow?.path.test(path) ? faults.slow.bytesPerSecond : undefined;
      const limit = cut ?? stall?.afterBytes ?? Number.POSITIVE_INFINITY;
      relay(answer, response, record, limit, slow).then(
        (whole) => {
          if (whole) response.end();
          else if (cut !== undefined) response.destroy();
          else answer.destroy(); // stalled: the client waits for the rest until stop()
        },
        () => response.destroy(),
      );
    });
  };

  const server = await listenLocal(handle);
  proxyUrl = server.url;
  return { host: `127.0.0.1:${server.port}`, url: server.url, faults, requests, stop: () => server.close() };
}
