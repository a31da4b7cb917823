import { type RequestListener, type Server, createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

/** A test's HTTP server on 127.0.0.1. */
export interface LocalServer {
  server: Server;
  port: number;
  /** "http://127.0.0.1:PORT" */
  url: string;
  /** Closes it, ending also the connections still open (kept alive, or stalled on purpose). */
  close(): Promise<void>;
}

/** Starts an HTTP server on 127.0.0.1, on a free port. */
export async function listenLocal(handler: RequestListener): Promise<LocalServer> {
  const server = createServer(handler);
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * A port on 127.0.0.1 that was free a moment ago, for a server of another process (which must bind
 * it itself: another process may take it meanwhile, so the caller retries on "address in use").
 */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
