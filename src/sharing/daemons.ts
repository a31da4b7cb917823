import { EventEmitter, once } from 'node:events';
import { stat } from 'node:fs/promises';
import type { Stream } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoxbuildError } from '../errors.js';
import { Child } from '../util/child.js';
import { diesWithParent } from '../util/orphans.js';

/** A daemon's stdin and stdout (default: none); its stderr is kept for error messages. */
export interface DaemonStdio {
  stdin?: Stream;
  stdout?: Stream;
}

/** A host-side helper process of a sharing backend (virtiofsd, sftp-server). */
export class Daemon {
  private output = '';
  private stopping = false;

  /** `died` is told when the daemon ends before it was asked to stop: the guest lost its share. */
  private constructor(
    readonly what: string,
    private readonly child: Child,
    died: (error: BoxbuildError) => void,
  ) {
    child.process.stderr?.on('data', (chunk: Buffer) => (this.output = (this.output + chunk.toString()).slice(-4000)));
    void child.ended.then(() => this.stopping || died(new BoxbuildError('vmFailed', `${this.what} stopped during the run: ${this.lastWords || 'it printed nothing'}`)));
  }

  static start(what: string, argv: string[], died: (error: BoxbuildError) => void, stdio: DaemonStdio = {}): Daemon {
    const [file, ...args] = diesWithParent(argv);
    return new Daemon(what, new Child(file!, args, { stdio: [stdio.stdin ?? 'ignore', stdio.stdout ?? 'ignore', 'pipe'], collect: false }), died);
  }

  get exited(): boolean {
    return this.child.exited;
  }

  /** What the daemon printed last, for error messages. */
  get lastWords(): string {
    return this.output.trim().split('\n').slice(-3).join(' / ');
  }

  /** Waits until the daemon created its Unix socket; fails when it exits or takes too long. */
  async waitForSocket(path: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await stat(path).then((s) => s.isSocket(), () => false))) {
      if (this.exited) throw new BoxbuildError('vmFailed', `${this.what} stopped at once: ${this.lastWords || 'it printed nothing'}`);
      if (Date.now() > deadline) throw new BoxbuildError('vmFailed', `${this.what} did not create its socket within ${timeoutMs / 1000} s`);
      await sleep(10);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.child.stop();
  }
}

/** The daemons of one backend's shares: stopped together; `lost` tells when one stopped on its own. */
export class Daemons {
  private readonly started: Daemon[] = [];
  private failure?: BoxbuildError;
  private readonly events = new EventEmitter();

  start(what: string, argv: string[], stdio?: DaemonStdio): Daemon {
    const daemon = Daemon.start(what, argv, (error) => {
      if (this.failure) return;
      this.failure = error;
      this.events.emit('failed', error);
    }, stdio);
    this.started.push(daemon);
    return daemon;
  }

  /** Rejects with the first daemon's failure, once there is one; ends (AbortError) when `signal` aborts. */
  readonly lost = async (signal: AbortSignal): Promise<never> => {
    const [error] = this.failure ? [this.failure] : await once(this.events, 'failed', { signal });
    throw error;
  };

  async stop(): Promise<void> {
    await Promise.all(this.started.map((daemon) => daemon.stop()));
  }
}
