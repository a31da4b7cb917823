import { BoxbuildError } from '../errors.js';

/** A promise that never resolves and rejects when the deadline passes; `clear()` disarms it. */
export function deadline(ms: number | undefined, makeError: () => Error): { promise: Promise<never>; clear: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_, reject) => {
    if (ms !== undefined) timer = setTimeout(() => reject(makeError()), ms);
  });
  promise.catch(() => {});
  return { promise, clear: () => clearTimeout(timer) };
}

/**
 * The error a run ends with when its signal aborts: SIGTERM gives exit 143, SIGPIPE (boxbuild's
 * stdout or stderr was closed) 141, a BoxbuildError itself (its output could not be written),
 * anything else (SIGINT) 130.
 */
const interruption = (reason: unknown) =>
  reason instanceof BoxbuildError
    ? reason
    : reason === 'SIGTERM'
    ? new BoxbuildError('terminated', 'terminated; the VM was stopped')
    : reason === 'SIGPIPE'
      ? new BoxbuildError('brokenPipe', 'the output was closed; the VM was stopped')
      : new BoxbuildError('interrupted', 'interrupted; the VM was stopped', { cause: reason });

/** Rejects when the signal aborts (see `interruption`). */
export function whenAborted(signal: AbortSignal | undefined): Promise<never> {
  const promise = new Promise<never>((_, reject) => {
    const fail = () => reject(interruption(signal?.reason));
    if (signal?.aborted) fail();
    signal?.addEventListener('abort', fail, { once: true });
  });
  promise.catch(() => {});
  return promise;
}

/**
 * The signal every wait of a run is given: it aborts on Ctrl-C or SIGTERM (`interrupt`) or when
 * `timeoutMs` passes, its reason being the error the run ends with. `clear()` disarms it.
 */
export function runEnding(interrupt: AbortSignal | undefined, timeoutMs: number | undefined, timeoutError: () => BoxbuildError): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  const onInterrupt = () => controller.abort(interruption(interrupt?.reason));
  if (interrupt?.aborted) onInterrupt();
  interrupt?.addEventListener('abort', onInterrupt, { once: true });
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => controller.abort(timeoutError()), timeoutMs);
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      interrupt?.removeEventListener('abort', onInterrupt);
    },
  };
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal.removeEventListener('abort', onAbort);
    promise.then(
      (value) => (settle(), resolve(value)),
      (error: unknown) => (settle(), reject(error)),
    );
  });
}
