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

/** Rejects when the signal aborts: SIGTERM gives exit 143, anything else (SIGINT) 130. */
export function whenAborted(signal: AbortSignal | undefined): Promise<never> {
  const promise = new Promise<never>((_, reject) => {
    const fail = () =>
      reject(
        signal?.reason === 'SIGTERM'
          ? new BoxbuildError('terminated', 'terminated; the VM was stopped')
          : new BoxbuildError('interrupted', 'interrupted; the VM was stopped'),
      );
    if (signal?.aborted) fail();
    signal?.addEventListener('abort', fail, { once: true });
  });
  promise.catch(() => {});
  return promise;
}
