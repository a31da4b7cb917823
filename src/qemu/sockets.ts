import { type Server, type Socket, createServer } from 'node:net';

/** A Unix socket that boxbuild listens on and QEMU connects to (exactly once) when it starts. */
export interface SocketEndpoint {
  path: string;
  /** Resolves with QEMU's connection. */
  connection: Promise<Socket>;
  /** The connection, once there is one. */
  readonly connected: Socket | undefined;
  close(): void;
}

export async function listenOnce(path: string): Promise<SocketEndpoint> {
  const server: Server = createServer();
  let connected: Socket | undefined;
  const connection = new Promise<Socket>((resolve) => {
    server.once('connection', (socket) => {
      server.close();
      resolve((connected = socket));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    path,
    connection,
    get connected() {
      return connected;
    },
    close: () => server.close(),
  };
}
