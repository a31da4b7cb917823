import { once } from 'node:events';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { BoxbuildError } from '../errors.js';
import type { SerialPort } from '../qemu/argv.js';
import { type SocketEndpoint, listenOnce } from '../qemu/sockets.js';
import { readLines } from '../util/lines.js';
import { type GuestMessage, type OutputCounts, PORT_NAMES, parseGuestMessage } from './protocol.js';

/** The longest line the agent may send on its control port (its longest, an ERROR, is far shorter). */
export const MAX_LINE_BYTES = 64 * 1024;
/** How many of its messages may wait unread: the agent sends one at a time, each in answer to something. */
export const MAX_PENDING_MESSAGES = 16;

/** The host end of the guest agent's four ports: control, stdin, stdout, stderr. */
export class GuestChannel {
  private readonly messages: GuestMessage[] = [];
  private readonly waiters: Array<() => void> = [];
  /** Bytes of the command's stdout and stderr passed on so far. */
  private readonly passedOn: OutputCounts = { stdout: 0, stderr: 0 };
  /** Set once the guest broke the protocol: every wait on the channel fails with it. */
  private broken?: BoxbuildError;

  private constructor(
    private readonly control: SocketEndpoint,
    private readonly stdin: SocketEndpoint,
    private readonly stdout: SocketEndpoint,
    private readonly stderr: SocketEndpoint,
  ) {
    void control.connection.then((socket) => {
      socket.on('error', () => {}); // QEMU went away: the VM's exit is reported elsewhere
      const breaks = (what: string) => {
        this.broken ??= new BoxbuildError('vmFailed', `the guest broke the protocol on its control port (${what})`);
        socket.destroy();
        this.wake();
      };
      readLines(socket, MAX_LINE_BYTES, {
        line: (line) => {
          if (this.broken) return;
          const message = parseGuestMessage(line);
          if (message.type === 'unknown') return breaks(`a line it does not know: ${JSON.stringify(line.slice(0, 40))}`);
          if (this.messages.length >= MAX_PENDING_MESSAGES) return breaks(`more than ${MAX_PENDING_MESSAGES} messages unasked for`);
          this.messages.push(message);
          this.wake();
        },
        tooLong: () => breaks(`a line longer than ${MAX_LINE_BYTES / 1024} KiB`),
      });
    });
  }

  static async listen(runDir: string): Promise<GuestChannel> {
    const [control, stdin, stdout, stderr] = await Promise.all(
      ['ctl', 'in', 'out', 'err'].map((name) => listenOnce(join(runDir, `${name}.sock`))),
    );
    return new GuestChannel(control!, stdin!, stdout!, stderr!);
  }

  get ports(): SerialPort[] {
    return [
      { name: PORT_NAMES.control, socket: this.control.path },
      { name: PORT_NAMES.stdin, socket: this.stdin.path },
      { name: PORT_NAMES.stdout, socket: this.stdout.path },
      { name: PORT_NAMES.stderr, socket: this.stderr.path },
    ];
  }

  /** Resolves with the first message of one of the given types; rejects once the guest broke the protocol. */
  async next<T extends GuestMessage['type']>(...types: T[]): Promise<Extract<GuestMessage, { type: T }>> {
    for (;;) {
      if (this.broken) throw this.broken;
      const index = this.messages.findIndex((message) => (types as string[]).includes(message.type));
      if (index >= 0) return this.messages.splice(index, 1)[0] as Extract<GuestMessage, { type: T }>;
      await this.changed();
    }
  }

  /** Resolves once as many bytes of each stream were passed on as the guest reported writing. */
  async outputPassedOn(expected: OutputCounts): Promise<void> {
    while (this.passedOn.stdout < expected.stdout || this.passedOn.stderr < expected.stderr) {
      if (this.broken) throw this.broken;
      await this.changed();
    }
  }

  private changed(): Promise<void> {
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    this.waiters.splice(0).forEach((wake) => wake());
  }

  /** Sends encoded request lines (see protocol.ts) to the agent. */
  async send(text: string): Promise<void> {
    const socket = await this.control.connection;
    socket.write(text);
  }

  /** The stdin port's host end (what a lent terminal types goes there). */
  async input(): Promise<Writable> {
    const socket = await this.stdin.connection;
    return socket.on('error', () => {});
  }

  /**
   * Streams `input` to the guest command's stdin, as fast as the guest takes it; its end closes the
   * port, which the command reads as end-of-file.
   */
  pipeInput(input: Readable): void {
    void this.input().then((socket) => input.pipe(socket));
  }

  /** Streams the guest command's stdout and stderr to the given streams. */
  pipeOutput(stdout: Writable, stderr: Writable): void {
    const pipe = (endpoint: SocketEndpoint, target: Writable, stream: keyof OutputCounts) =>
      void endpoint.connection.then((socket) => {
        socket.on('error', () => {});
        socket.on('data', (chunk: Buffer) => {
          this.passedOn[stream] += chunk.length;
          this.wake();
        });
        socket.pipe(target, { end: false });
      });
    pipe(this.stdout, stdout, 'stdout');
    pipe(this.stderr, stderr, 'stderr');
  }

  /**
   * Waits until every byte the guest wrote has been passed on. Call after QEMU exited: its end of
   * each connected socket is closed then, so the streams end once they are drained.
   */
  async drained(): Promise<void> {
    const ended = async (endpoint: SocketEndpoint) => {
      endpoint.close();
      const socket = await Promise.race([endpoint.connection, Promise.resolve(undefined)]);
      if (!socket || socket.destroyed || socket.readableEnded) return;
      // A stream whose reader went away (EPIPE) was unpiped and paused: let it run to its end.
      socket.resume();
      await once(socket as Socket, 'close').catch(() => {});
    };
    await Promise.all([ended(this.stdout), ended(this.stderr)]);
    this.control.close();
    this.stdin.close();
    const input = await Promise.race([this.stdin.connection, Promise.resolve(undefined)]);
    input?.destroy(); // unpipes what fed it
  }
}
