import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { ChannelEnds } from '../driver/types.js';
import { BoxbuildError } from '../errors.js';
import type { SocketEndpoint } from '../qemu/sockets.js';
import { readLines } from '../util/lines.js';
import { type GuestMessage, type OutputCounts, parseGuestMessage } from './protocol.js';

/** The longest line the agent may send on its control port (its longest, an ERROR, is far shorter). */
export const MAX_LINE_BYTES = 64 * 1024;
/** How many of its messages may wait unread: the agent sends one at a time, each in answer to something. */
export const MAX_PENDING_MESSAGES = 16;

/** The host end of the guest agent's four streams (control, stdin, stdout, stderr), whatever carries them. */
export class GuestChannel {
  private readonly messages: GuestMessage[] = [];
  private readonly waiters: Array<() => void> = [];
  /** Bytes of the command's stdout and stderr passed on so far. */
  private readonly passedOn: OutputCounts = { stdout: 0, stderr: 0 };
  /** Set once the guest broke the protocol: every wait on the channel fails with it. */
  private broken?: BoxbuildError;

  private readonly control: SocketEndpoint;
  private readonly stdin: SocketEndpoint;
  private readonly stdout: SocketEndpoint;
  private readonly stderr: SocketEndpoint;

  constructor(ends: ChannelEnds) {
    ({ control: this.control, stdin: this.stdin, stdout: this.stdout, stderr: this.stderr } = ends);
    void this.control.connection.then((socket) => {
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

  /**
   * Resolves with the first message of one of the given types; rejects once the guest broke the
   * protocol, or with the signal's reason when it aborts.
   */
  async next<T extends GuestMessage['type']>(signal: AbortSignal, ...types: T[]): Promise<Extract<GuestMessage, { type: T }>> {
    for (;;) {
      if (this.broken) throw this.broken;
      const index = this.messages.findIndex((message) => (types as string[]).includes(message.type));
      if (index >= 0) return this.messages.splice(index, 1)[0] as Extract<GuestMessage, { type: T }>;
      await this.changed(signal);
    }
  }

  /** Resolves once as many bytes of each stream were passed on as the guest reported writing (or rejects as `next`). */
  async outputPassedOn(expected: OutputCounts, signal: AbortSignal): Promise<void> {
    while (this.passedOn.stdout < expected.stdout || this.passedOn.stderr < expected.stderr) {
      if (this.broken) throw this.broken;
      await this.changed(signal);
    }
  }

  /** Resolves at the next message or output; a waiter whose signal aborts is taken off the list. */
  private changed(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const gone = () => {
        this.waiters.splice(this.waiters.indexOf(wake), 1);
        reject(signal.reason);
      };
      const wake = () => (signal.removeEventListener('abort', gone), resolve());
      signal.addEventListener('abort', gone, { once: true });
      this.waiters.push(wake);
    });
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
      const socket = endpoint.connected;
      if (!socket || socket.destroyed || socket.readableEnded) return;
      // A stream whose reader went away (EPIPE) was unpiped and paused: let it run to its end.
      socket.resume();
      await once(socket as Socket, 'close').catch(() => {});
    };
    await Promise.all([ended(this.stdout), ended(this.stderr)]);
    this.control.close();
    this.stdin.close();
    this.stdin.connected?.destroy(); // unpipes what fed it
  }
}
