import { BoxbuildError } from '../errors.js';

/*
 * How a run ends early: one signal for the whole run, from its first step (box download, lock wait)
 * to its last, whose reason is the error the run ends with: Ctrl-C, SIGTERM, --timeout, a closed
 * output, Enter ~ . on a lent terminal.
 */

/**
 * The error a run ends with when its signal aborts: SIGTERM gives exit 143, SIGPIPE (boxbuild's
 * stdout or stderr was closed) 141, a BoxbuildError itself (its output could not be written),
 * anything else (SIGINT) 130.
 */
export const interruption = (reason: unknown) =>
  reason instanceof BoxbuildError
    ? reason
    : reason === 'SIGTERM'
      ? new BoxbuildError('terminated', 'terminated; the VM was stopped')
      : reason === 'SIGPIPE'
        ? new BoxbuildError('brokenPipe', 'the output was closed; the VM was stopped')
        : new BoxbuildError('interrupted', 'interrupted; the VM was stopped', { cause: reason });

export interface RunEnding {
  /** Aborts when the run must end; its reason is the run's error. */
  signal: AbortSignal;
  /** Ends the run as Ctrl-C would (Enter ~ . on a lent terminal, whose Ctrl-C is the guest's). */
  escape(): void;
  /** Disarms the timer and detaches from the caller's signal. */
  clear(): void;
}

/**
 * The run's signal: it aborts when `interrupt` does (Ctrl-C, SIGTERM, a closed output), on escape(),
 * or when `timeoutMs` has passed since now, with the error `timeoutError()` makes then.
 */
export function runEnding(interrupt: AbortSignal | undefined, timeoutMs: number | undefined, timeoutError: () => BoxbuildError): RunEnding {
  const controller = new AbortController();
  const onInterrupt = () => controller.abort(interruption(interrupt?.reason));
  if (interrupt?.aborted) onInterrupt();
  interrupt?.addEventListener('abort', onInterrupt, { once: true });
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => controller.abort(timeoutError()), timeoutMs);
  return {
    signal: controller.signal,
    escape: () => controller.abort(interruption('SIGINT')),
    clear: () => {
      clearTimeout(timer);
      interrupt?.removeEventListener('abort', onInterrupt);
    },
  };
}
