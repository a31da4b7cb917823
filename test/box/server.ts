import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type LocalServer, listenLocal } from '../helpers/http.js';

export interface Hit {
  path: string;
  range?: string;
  status: number;
  /** Body bytes sent. */
  bytes: number;
}

/**
 * A file server on 127.0.0.1 for box tests: serves in-memory files with ETag, Last-Modified and
 * Range support, records every request, and misbehaves on request (status codes, cut or stalled
 * connections).
 */
export class BoxServer {
  readonly hits: Hit[] = [];
  private readonly files = new Map<string, { data: Buffer; etag: string; modified: string }>();
  /** Statuses to answer a path with before serving it (shifted one per request). */
  readonly failures = new Map<string, number[]>();
  /** Cut the connection of the next request of a path after this many body bytes. */
  readonly cuts = new Map<string, number>();
  /** Paths whose responses send a few bytes and then nothing. */
  readonly stalls = new Set<string>();
  /** Paths answered with a redirect to this location. */
  readonly redirects = new Map<string, string>();
  /** Paths answered with an endless body and no Content-Length. */
  readonly endless = new Set<string>();
  /** Paths whose body is sent one byte per this many milliseconds. */
  readonly trickles = new Map<string, number>();
  private server?: LocalServer;
  url = '';

  publish(path: string, data: Buffer | string, withSidecar = false): Buffer {
    const buffer = Buffer.from(data);
    const sha256 = createHash('sha256').update(buffer).digest('hex');
    this.files.set(path, { data: buffer, etag: `"${sha256.slice(0, 16)}"`, modified: new Date(Date.UTC(2025, 0, this.files.size + 1)).toUTCString() });
    if (withSidecar) this.publish(`${path}.sha256`, `${sha256}  ${path.slice(1)}\n`);
    return buffer;
  }

  hitsOf(path: string): Hit[] {
    return this.hits.filter((hit) => hit.path === path);
  }

  bytesSent(path: string): number {
    return this.hitsOf(path).reduce((sum, hit) => sum + hit.bytes, 0);
  }

  async start(): Promise<string> {
    this.server = await listenLocal((request, response) => this.handle(request, response));
    this.url = this.server.url;
    return this.url;
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  /** 64 KiB chunks as fast as the client takes them, until it goes away. */
  private sendEndless(hit: Hit, response: ServerResponse): void {
    response.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 << 10, 7);
    const more = () => {
      while (!response.destroyed) {
        hit.bytes += chunk.length;
        if (!response.write(chunk)) return void response.once('drain', more);
      }
    };
    more();
  }

  private sendTrickle(hit: Hit, response: ServerResponse, body: Buffer, interval: number): void {
    const timer = setInterval(() => {
      if (response.destroyed || hit.bytes >= body.length) return void clearInterval(timer);
      response.write(body.subarray(hit.bytes, ++hit.bytes));
    }, interval);
    response.on('close', () => clearInterval(timer));
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const path = request.url ?? '/';
    const hit: Hit = { path, range: request.headers.range, status: 200, bytes: 0 };
    this.hits.push(hit);
    const failure = this.failures.get(path)?.shift();
    const file = this.files.get(path);
    const location = this.redirects.get(path);
    if (location) {
      hit.status = 302;
      response.writeHead(302, { location }).end();
      return;
    }
    if (this.endless.has(path)) {
      this.sendEndless(hit, response);
      return;
    }
    if (failure || !file) {
      hit.status = failure ?? 404;
      response.writeHead(hit.status).end();
      return;
    }
    if (request.headers['if-none-match'] === file.etag) {
      hit.status = 304;
      response.writeHead(304, { etag: file.etag }).end();
      return;
    }
    let body = file.data;
    const headers: Record<string, string | number> = { etag: file.etag, 'last-modified': file.modified, 'accept-ranges': 'bytes' };
    const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      if (start >= file.data.length) {
        hit.status = 416;
        response.writeHead(416, { 'content-range': `bytes */${file.data.length}` }).end();
        return;
      }
      body = file.data.subarray(start);
      hit.status = 206;
      headers['content-range'] = `bytes ${start}-${file.data.length - 1}/${file.data.length}`;
    }
    headers['content-length'] = body.length;
    response.writeHead(hit.status, headers);
    const interval = this.trickles.get(path);
    if (interval !== undefined) {
      this.sendTrickle(hit, response, body, interval);
      return;
    }
    const cut = this.cuts.get(path);
    if (cut !== undefined || this.stalls.has(path)) {
      this.cuts.delete(path);
      const part = body.subarray(0, cut ?? 10);
      hit.bytes = part.length;
      response.write(part, () => {
        if (cut !== undefined) response.socket?.end(); // FIN after the bytes: the client gets exactly these
      });
      return;
    }
    hit.bytes = body.length;
    response.end(body);
  }
}
