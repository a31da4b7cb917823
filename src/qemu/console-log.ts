import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

/** Keeps the guest's console in a log file and its last lines in memory (8 KiB), optionally echoing it. */
export class ConsoleLog {
  private readonly file: WriteStream;
  private recent = '';
  private sawOutput = false;
  private socket?: Socket;
  /** Patterns waited for, each with the console text since it was asked for. */
  private readonly watchers: Array<{ pattern: RegExp; text: string; found: (match: RegExpExecArray) => void }> = [];

  constructor(
    readonly path: string,
    private readonly echo?: Writable,
  ) {
    this.file = createWriteStream(path);
  }

  attach(socket: Socket): void {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.sawOutput = true;
      // A log or echo that falls behind holds the guest's console back rather than piling up here.
      const behind = [this.file, this.echo].filter((stream) => stream && !stream.write(chunk)) as Writable[];
      if (behind.length) {
        socket.pause();
        void Promise.all(behind.map((stream) => once(stream, 'drain'))).then(() => socket.resume(), () => {});
      }
      const text = chunk.toString('utf8');
      this.recent = (this.recent + text).slice(-8192);
      for (const watcher of [...this.watchers]) {
        watcher.text = (watcher.text + text).slice(-4096);
        const match = watcher.pattern.exec(watcher.text);
        if (match) {
          this.watchers.splice(this.watchers.indexOf(watcher), 1);
          watcher.found(match);
        }
      }
    });
    socket.on('error', () => {});
  }

  /** Resolves once the console shows a line matching `pattern` (printed from now on); rejects when `signal` aborts. */
  whenShown(pattern: RegExp, signal: AbortSignal): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const watcher = { pattern, text: '', found: (match: RegExpExecArray) => (signal.removeEventListener('abort', stop), resolve(match)) };
      const stop = () => {
        this.watchers.splice(this.watchers.indexOf(watcher), 1);
        reject(signal.reason);
      };
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener('abort', stop, { once: true });
      this.watchers.push(watcher);
    });
  }

  /** What is written here is typed on the guest's console (a debug shell reads it). */
  get input(): Socket | undefined {
    return this.socket;
  }

  get hasOutput(): boolean {
    return this.sawOutput;
  }

  /**
   * The last lines the guest printed, without terminal control characters. A kernel panic or oops
   * line that scrolled out of them (behind a long stack trace) is put first.
   */
  tail(count = 15): string {
    const lines = this.recent
      .replace(/\r/g, '')
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '')
      .split('\n')
      .filter((line) => line.trim() !== '');
    const last = lines.slice(-count);
    const earlier = lines.slice(0, -count);
    const cause = [/Kernel panic/, /BUG:|Oops:/].map((pattern) => earlier.find((line) => pattern.test(line))).find(Boolean);
    return (cause ? [cause, '...', ...last] : last).join('\n');
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.file.end(resolve));
  }
}
