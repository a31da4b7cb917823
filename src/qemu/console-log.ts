import { createWriteStream, type WriteStream } from 'node:fs';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

/** Keeps the guest's console in a log file and its last lines in memory, optionally echoing it. */
export class ConsoleLog {
  private readonly file: WriteStream;
  private recent = '';
  private sawOutput = false;

  constructor(
    readonly path: string,
    private readonly echo?: Writable,
  ) {
    this.file = createWriteStream(path);
  }

  attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.sawOutput = true;
      this.file.write(chunk);
      this.echo?.write(chunk);
      this.recent = (this.recent + chunk.toString('utf8')).slice(-8192);
    });
    socket.on('error', () => {});
  }

  get hasOutput(): boolean {
    return this.sawOutput;
  }

  /** The last lines the guest printed, without terminal control characters. */
  tail(lines = 15): string {
    return this.recent
      .replace(/\r/g, '')
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '')
      .split('\n')
      .filter((line) => line.trim() !== '')
      .slice(-lines)
      .join('\n');
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.file.end(resolve));
  }
}
