import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { Readable } from 'node:stream';

/*
 * Child processes of a run (QEMU, sharing daemons, ssh, qemu-img) on node:child_process alone:
 * execa costs a warm run more to load than the VM takes to restore.
 */

/** How a child process ended. */
export interface ChildEnd {
  /** undefined when it was killed by a signal or never started. */
  exitCode?: number;
  signal?: NodeJS.Signals;
  /** What it printed on the pipes it was given (see ChildOptions.collect), the last 64 KiB of each. */
  stdout: string;
  stderr: string;
  /** Both, in the order printed. */
  all: string;
  /** It was killed because `timeoutMs` passed. */
  timedOut: boolean;
  /** Why it could not be started (ENOENT, EACCES). */
  startError?: NodeJS.ErrnoException;
}

export interface ChildOptions {
  /** As for spawn; default: no stdin, stdout and stderr piped. */
  stdio?: StdioOptions;
  /** Written to stdin, which is then closed (needs stdin 'pipe'); a stream is piped as the child takes it. */
  input?: string | Uint8Array | Readable;
  /** Keep what it prints in ChildEnd (default); false leaves the pipes to the caller. */
  collect?: boolean;
  /** Killed (SIGKILL) after this long. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGTERM) when this aborts. */
  signal?: AbortSignal;
  /** In a process group of its own: a Ctrl-C at the terminal reaches it only through its parent. */
  detached?: boolean;
}

const KEEP = 64 * 1024;
const running = new Set<ChildProcess>();
let exitHook = false;

/** Children still running when boxbuild exits are killed (a SIGKILL of boxbuild itself: see diesWithParent). */
function killOnExit(child: ChildProcess): void {
  running.add(child);
  child.once('close', () => running.delete(child));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => running.forEach((orphan) => orphan.kill('SIGKILL')));
}

export class Child {
  readonly process: ChildProcess;
  /** Resolves when the child has ended and its pipes are closed (never rejects). */
  readonly ended: Promise<ChildEnd>;

  constructor(file: string, args: string[], options: ChildOptions = {}) {
    const child = (this.process = spawn(file, args, { stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'], env: options.env, signal: options.signal, detached: options.detached }));
    const end: ChildEnd = { stdout: '', stderr: '', all: '', timedOut: false };
    if (options.collect !== false) {
      for (const name of ['stdout', 'stderr'] as const) {
        child[name]?.on('data', (chunk: Buffer) => {
          end[name] = (end[name] + chunk.toString()).slice(-KEEP);
          end.all = (end.all + chunk.toString()).slice(-KEEP);
        });
      }
    }
    if (options.input !== undefined) {
      child.stdin?.on('error', () => {}); // EPIPE: the child did not read it all
      if (options.input instanceof Readable) options.input.pipe(child.stdin!);
      else child.stdin?.end(options.input);
    }
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => ((end.timedOut = true), child.kill('SIGKILL')), options.timeoutMs);
    killOnExit(child);
    this.ended = new Promise((resolve) => {
      child.once('error', (error) => (end.startError = error));
      // After 'error' too, when it could not be started.
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ ...end, exitCode: code ?? undefined, signal: signal ?? undefined });
      });
    });
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get exited(): boolean {
    return this.process.exitCode !== null || this.process.signalCode !== null || this.process.pid === undefined;
  }

  /** SIGTERM, and SIGKILL if it is still there after `graceMs`; resolves when it has ended. */
  async stop(graceMs = 2000): Promise<ChildEnd> {
    if (!this.exited) {
      this.process.kill('SIGTERM');
      const force = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
      void this.ended.then(() => clearTimeout(force));
    }
    return this.ended;
  }
}

/** Runs a program to its end. */
export const runChild = (file: string, args: string[], options?: ChildOptions): Promise<ChildEnd> => new Child(file, args, options).ended;

/** What a failed child said last, for error messages. */
export function lastWords(end: ChildEnd, text: string = end.stderr): string {
  if (end.startError) return end.startError.message;
  return text.trim().split('\n').filter(Boolean).pop() ?? (end.signal ? `killed by ${end.signal}` : `exit status ${end.exitCode}`);
}
