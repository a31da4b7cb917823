import { once } from 'node:events';
import { type WriteStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable, finished } from 'node:stream';
import { formatBytes } from '../util/size.js';
import { PRIVATE_DIR, PRIVATE_FILE } from './modes.js';

/*
 * The logs of past builds, `<cache>/logs/<time>-<box>-<arch>-<pid>.log`: what the build wrote on
 * stdout and stderr, as it came, between a header (boxbuild's argv) and a footer (how it ended), so
 * that a nightly build that failed can be read the next morning. A log holds at most the first
 * `head` and the last `tail` bytes of the output, also while the build runs (the tail waits in
 * memory until the build ends). The newest KEEP logs stay, and at most CAP_BYTES of them; `box
 * prune` drops them all. A log that cannot be written (a full disk) is given up with one warning:
 * the build's output and status never depend on it.
 */

const KEEP = 100;
const CAP_BYTES = 256 * 1024 * 1024;

/** How much of a build's output one log keeps: its start (what ran, the first error) and its end (how it failed). */
export interface LogBounds {
  head: number;
  tail: number;
}

const LOG_BOUNDS: LogBounds = { head: 48 * 1024 * 1024, tail: 16 * 1024 * 1024 };

export const logsDir = (cacheRoot: string) => join(cacheRoot, 'logs');

export interface BuildLog {
  path: string;
  /** False once the log was given up (it could not be written). */
  readonly kept: boolean;
  /** Passes what is written on to `stream` and into the log. */
  tee(stream: Writable): Writable;
  /** Writes the tail and the footer and closes the log. */
  close(ending: string): Promise<void>;
}

/** The last `size` bytes written, in one buffer of that size. */
class Ring {
  private readonly buffer: Buffer;
  private end = 0;
  /** Bytes written in all. */
  total = 0;

  constructor(size: number) {
    this.buffer = Buffer.alloc(size);
  }

  write(chunk: Buffer): void {
    const size = this.buffer.length;
    const kept = chunk.subarray(Math.max(0, chunk.length - size));
    const first = Math.min(kept.length, size - this.end);
    kept.copy(this.buffer, this.end, 0, first);
    kept.copy(this.buffer, 0, first);
    this.end = (this.end + kept.length) % size;
    this.total += chunk.length;
  }

  contents(): Buffer {
    return this.total < this.buffer.length ? this.buffer.subarray(0, this.end) : Buffer.concat([this.buffer.subarray(this.end), this.buffer.subarray(0, this.end)]);
  }
}

class LogFile implements BuildLog {
  private file?: WriteStream;
  kept = true;
  /** Bytes of output written into the head so far. */
  private written = 0;
  private tailRing?: Ring;

  constructor(
    readonly path: string,
    private readonly warn: (line: string) => void,
    private readonly bounds: LogBounds,
  ) {}

  /** Creates the file: it exists once this resolves (unless the log was given up: a full disk). */
  async open(header: string): Promise<void> {
    const file = (this.file = createWriteStream(this.path, { flags: 'wx', mode: PRIVATE_FILE }));
    file.on('error', (error) => this.giveUp(error));
    file.write(header);
    await once(file, 'ready').catch(() => {}); // an error gave the log up (see above)
  }

  /** Gives the log up (once): says so, and removes what it holds, which would pass for the whole output. */
  giveUp(error: Error): void {
    if (!this.kept) return;
    this.kept = false;
    this.file?.destroy();
    this.file = undefined;
    this.warn(`warning: cannot keep the build's log in ${dirname(this.path)}: ${error.message}; the build goes on`);
    void rm(this.path, { force: true }).catch(() => {});
  }

  private write(chunk: Buffer): void {
    if (!this.file) return;
    const room = this.bounds.head - this.written;
    if (room > 0) {
      this.file.write(chunk.subarray(0, room));
      this.written += Math.min(room, chunk.length);
    }
    if (chunk.length <= room) return;
    if (!this.tailRing) {
      this.tailRing = new Ring(this.bounds.tail);
      this.file.write(`\n# boxbuild: this log keeps the first ${formatBytes(this.bounds.head)} of the output and its last ${formatBytes(this.bounds.tail)}, written when the build ends\n`);
    }
    this.tailRing.write(chunk.subarray(Math.max(room, 0)));
  }

  tee(stream: Writable): Writable {
    return new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.write(chunk);
        // A closed stdout is the CLI's to handle (it ends the run); the log goes on.
        stream.write(chunk, () => done());
      },
    });
  }

  close(ending: string): Promise<void> {
    const file = this.file;
    if (!file) return Promise.resolve();
    if (this.tailRing) {
      const tail = this.tailRing.contents();
      const left = this.tailRing.total - tail.length;
      if (left > 0) file.write(`\n# boxbuild: ${left} bytes of output left out here\n`);
      file.write(tail);
    }
    return new Promise<void>((resolve) => {
      finished(file, () => resolve()); // also when the footer cannot be written: giveUp said so
      file.end(`\n# ${ending} at ${new Date().toISOString()}\n`);
    });
  }
}

/**
 * Starts the log of a build; older logs beyond the bounds are removed first. `warn` is told once
 * when the log cannot be kept.
 */
export async function openBuildLog(
  cacheRoot: string,
  about: { box: string; arch: string; argv: string[] },
  warn: (line: string) => void,
  bounds = LOG_BOUNDS,
): Promise<BuildLog> {
  const dir = logsDir(cacheRoot);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const log = new LogFile(join(dir, `${stamp}-${about.box}-${about.arch}-${process.pid}.log`), warn, bounds);
  try {
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
    await trimLogs(dir);
    await log.open(`# boxbuild ${about.argv.join(' ')}\n# started ${new Date().toISOString()}\n`);
  } catch (error) {
    log.giveUp(error as Error);
  }
  return log;
}

/** Keeps the newest logs within the bounds (to make room for one more). */
async function trimLogs(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.log')).sort().reverse(); // newest first: names start with the time
  let total = 0;
  for (const [index, name] of names.entries()) {
    const path = join(dir, name);
    total += (await stat(path).catch(() => ({ size: 0 }))).size;
    if (index >= KEEP - 1 || total > CAP_BYTES) await rm(path, { force: true });
  }
}

/** Every log, for `box prune`. */
export async function allLogs(cacheRoot: string): Promise<string[]> {
  const dir = logsDir(cacheRoot);
  return (await readdir(dir).catch(() => [] as string[])).map((name) => join(dir, name));
}
