import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/**
 * A file server for the download benchmark, run as its own process so that it does not share
 * the client's event loop: serves the files of a directory on 127.0.0.1 with an ETag (304 on
 * If-None-Match), prints its URL, and stops when its standard input closes.
 */
const root = process.argv[2]!;
const server = createServer((request, response) => {
  let size: number;
  let etag: string;
  const path = join(root, decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname));
  try {
    const info = statSync(path);
    size = info.size;
    etag = `"${info.size}-${info.mtimeMs}"`;
  } catch {
    response.writeHead(404).end();
    return;
  }
  if (request.headers['if-none-match'] === etag) {
    response.writeHead(304, { etag }).end();
    return;
  }
  response.writeHead(200, { etag, 'content-length': size });
  createReadStream(path, { highWaterMark: 1 << 20 }).pipe(response);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}\n`));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
