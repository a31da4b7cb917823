import { getEventListeners } from 'node:events';
import { describe, expect, test } from 'vitest';
import { after, race, untilAborted, waitFor } from '../../../src/util/abort.js';

describe('waits that end on abort', () => {
  test('waitFor ends with the signal\'s reason and leaves no listener, whichever comes first', async () => {
    const controller = new AbortController();
    await expect(waitFor(Promise.resolve(1), controller.signal)).resolves.toBe(1);
    expect(getEventListeners(controller.signal, 'abort')).toEqual([]);
    const pending = waitFor(new Promise(() => {}), controller.signal);
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
    expect(getEventListeners(controller.signal, 'abort')).toEqual([]);
  });

  test('waitFor on a signal aborted already: the promise\'s later failure is not left unhandled (it crashed boxbuild)', async () => {
    const controller = new AbortController();
    controller.abort(new Error('interrupted'));
    let fail: (error: Error) => void = () => {};
    const later = new Promise<never>((_, reject) => (fail = reject));
    await expect(waitFor(later, controller.signal)).rejects.toThrow('interrupted');
    fail(new Error('the racers end too'));
    await new Promise((resolve) => setImmediate(resolve)); // an unhandled rejection would fail this test
    await expect(race(controller.signal, [async () => 'never asked'])).rejects.toThrow('interrupted');
  });

  test('race: the first racer wins, and the losers are told to stop (no timer or listener left)', async () => {
    const outer = new AbortController();
    const seen: AbortSignal[] = [];
    const winner = race(outer.signal, [
      async (signal) => (seen.push(signal), 'first'),
      (signal) => (seen.push(signal), untilAborted(signal)),
      after(60_000, () => new Error('too late')),
    ]);
    await expect(winner).resolves.toBe('first');
    expect(seen.every((signal) => signal.aborted)).toBe(true);
    expect(getEventListeners(outer.signal, 'abort')).toEqual([]);
  });

  test('race ends with the outer signal\'s reason when it aborts first', async () => {
    const outer = new AbortController();
    const running = race(outer.signal, [untilAborted]);
    outer.abort(new Error('interrupted'));
    await expect(running).rejects.toThrow('interrupted');
  });

  test('after() fails the race once its time has passed', async () => {
    await expect(race(new AbortController().signal, [untilAborted, after(10, () => new Error('late'))])).rejects.toThrow('late');
  });
});
