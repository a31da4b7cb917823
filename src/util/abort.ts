import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/*
 * Waits that end when a signal aborts, and races whose losers are told to stop: every racer gets
 * the same signal, aborted once the race is decided (as execa's cancel does), so no loser keeps a
 * timer or a listener.
 */

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts; no listener stays behind. */
export function waitFor<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) {
      promise.catch(() => {}); // how it ends is nobody's concern now, and no unhandled rejection
      return onAbort();
    }
    signal.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal.removeEventListener('abort', onAbort);
    promise.then(
      (value) => (settle(), resolve(value)),
      (error: unknown) => (settle(), reject(error)),
    );
  });
}

/** One contender of a race: started with the race's signal, which aborts once the race is decided. */
export type Racer<T> = (signal: AbortSignal) => Promise<T>;

/**
 * Settles like the first racer to settle (or rejects with `signal`'s reason when it aborts first);
 * then aborts the racers' signal, so that the others stop waiting.
 */
export async function race<T>(signal: AbortSignal, racers: Array<Racer<T>>): Promise<T> {
  const decided = new AbortController();
  const racerSignal = AbortSignal.any([signal, decided.signal]);
  const running = racers.map((racer) => racer(racerSignal));
  try {
    return await waitFor(Promise.race(running), signal);
  } finally {
    decided.abort();
    for (const loser of running) loser.catch(() => {}); // a loser's end (often an AbortError) is nobody's concern
  }
}

/** A racer that rejects with `makeError()` after `ms`, unless the race is decided first. */
export const after =
  (ms: number, makeError: () => Error): Racer<never> =>
  async (signal) => {
    await sleep(ms, undefined, { signal });
    throw makeError();
  };

/** Rejects with the signal's reason once it aborts: a racer that only ends the race by losing it. */
export async function untilAborted(signal: AbortSignal): Promise<never> {
  if (!signal.aborted) await once(signal, 'abort');
  throw signal.reason;
}

/** Waits until `promise` has settled, whatever its outcome, or `ms` have passed. */
export function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  const settled = promise.then(
    () => {},
    () => {},
  );
  return race(new AbortController().signal, [() => settled, (signal) => sleep(ms, undefined, { signal })]);
}
