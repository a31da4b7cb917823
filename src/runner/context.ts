import { BoxbuildError } from '../errors.js';
import { type Racer, race, waitFor } from '../util/abort.js';
import { CleanupStack } from '../util/cleanup.js';
import { runEnding } from './ending.js';
import { CLI_OPTION_NAMES, type RunControl, type RunIo } from './options.js';

/*
 * A run's context, handed to every stage: the one signal every wait is given, the cleanup stack
 * every resource registers its undo on as it is acquired, the stage the run is in (a --timeout
 * says which), and where notices go.
 */

/** Where a run is: shared by the run's context and its attempts. */
interface Progress {
  /** What the run is doing now, as a --timeout names it ("booting the VM"). */
  stage: string;
  /** Whether a VM was started (a --timeout then says it was stopped). */
  vmStarted: boolean;
}

export class RunContext {
  constructor(
    readonly signal: AbortSignal,
    readonly io: Pick<RunIo, 'notice' | 'verbose'>,
    /** Ends the run as Ctrl-C would (Enter ~ . on a lent terminal, whose Ctrl-C is the guest's). */
    readonly escape: () => void = () => {},
    readonly cleanup = new CleanupStack(),
    private readonly progress: Progress = { stage: 'starting', vmStarted: false },
  ) {}

  get stage(): string {
    return this.progress.stage;
  }

  get vmStarted(): boolean {
    return this.progress.vmStarted;
  }

  /** Registers the undo of a resource just acquired. */
  defer(undo: () => unknown): void {
    this.cleanup.defer(undo);
  }

  /** Waits for `promise`, or rejects with the run's error once the run must end. */
  wait<T>(promise: Promise<T>): Promise<T> {
    return waitFor(promise, this.signal);
  }

  /** The first racer to settle; the others are told to stop (see util/abort). */
  race<T>(racers: Array<Racer<T>>): Promise<T> {
    return race(this.signal, racers);
  }

  /** Enters a stage: its name is what a --timeout reports. */
  enter(stage: string): void {
    this.progress.stage = stage;
  }

  /** A signal for waits in the background: it aborts with the run's, or when this context is cleaned up. */
  background(): AbortSignal {
    const done = new AbortController();
    this.defer(() => done.abort());
    return AbortSignal.any([this.signal, done.signal]);
  }

  /** Notes that a VM runs from now on. */
  vmRuns(): void {
    this.progress.vmStarted = true;
  }

  /**
   * A context for an attempt that may be undone on its own (a restore that fails): the same signal
   * and stage, a cleanup stack of its own; `keep()` hands its resources over to this context.
   */
  attempt(): RunContext & { keep(): void } {
    const child = new RunContext(this.signal, this.io, this.escape, new CleanupStack(), this.progress);
    return Object.assign(child, { keep: () => this.cleanup.adopt(child.cleanup) });
  }

  /** Runs `body` in a scope of its own: what it registers is undone when it ends (a failure of `body` wins over one of its cleanup). */
  scope<T>(body: (ctx: RunContext) => Promise<T>): Promise<T> {
    const child = this.attempt();
    return withCleanup(() => body(child), child.cleanup, this.io.notice);
  }

  notice(line: string): void {
    this.io.notice(line);
  }

  /** A notice shown with --verbose only. */
  detail(line: string): void {
    if (this.io.verbose) this.io.notice(line);
  }
}

/**
 * Runs `body` in a fresh context: its signal aborts on the caller's signal and at the run's
 * --timeout; everything registered on the context is undone afterwards, on every path. A failure of
 * the body wins over one of the cleanup (which is then told as a warning).
 */
export async function inRun<T>(options: RunIo & RunControl, body: (ctx: RunContext) => Promise<T>): Promise<T> {
  let ctx: RunContext | undefined;
  const timeoutError = () => {
    const seconds = options.timeoutMs! / 1000;
    const what = ctx?.vmStarted ? '; the VM was stopped' : '';
    const name = (options.optionNames ?? CLI_OPTION_NAMES).timeout;
    return new BoxbuildError('timeout', `the run did not finish within ${name} ${seconds} s (it was ${ctx?.stage ?? 'starting'})${what}`);
  };
  const ending = runEnding(options.signal, options.timeoutMs, timeoutError);
  const run = (ctx = new RunContext(ending.signal, options, ending.escape));
  try {
    return await withCleanup(() => body(run), run.cleanup, options.notice);
  } finally {
    ending.clear();
  }
}

/** Runs `body`, then `cleanup` whatever happened; a failure of `body` wins over one of the cleanup, which `warn` is told of. */
async function withCleanup<T>(body: () => Promise<T>, cleanup: CleanupStack, warn: (line: string) => void): Promise<T> {
  let failed = false;
  try {
    return await body();
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    await cleanup.unwind().catch((error: unknown) => {
      if (!failed) throw error;
      warn(`warning: cleaning up failed too: ${(error as Error).message}`);
    });
  }
}
