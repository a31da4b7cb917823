import { Writable } from 'node:stream';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { startProgress } from '../../../src/box/progress.js';

/** A terminal of `columns` columns: what was drawn on it, each redraw as it would be seen. */
function terminal(columns: number) {
  const writes: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (writes.push(chunk.toString()), done()) });
  const stream = Object.assign(sink, { isTTY: true, columns });
  return { stream, lines: () => writes.join('').split('\r').filter(Boolean).map((line) => line.replace('\u001b[K', '')) };
}

describe('download progress on a terminal', () => {
  test('a wide terminal gets a 20-cell bar, the figures and the file name', () => {
    const tty = terminal(120);
    startProgress({ stream: tty.stream, log: () => {} }, 'kernel.deb', 100 << 20, 0).finish(true);
    expect(tty.lines()[0]).toMatch(/^\[-{20}\] 0 B \/ 100\.0 MiB {2}.*ETA .* {2}kernel\.deb\n?$/);
  });

  test('on 40 columns the bar shrinks so that amount, rate and ETA still fit; the name is cut', () => {
    const tty = terminal(40);
    const progress = startProgress({ stream: tty.stream, log: () => {} }, 'linux-image-6.1.0-56-amd64.deb', 100 << 20, 50 << 20);
    progress.finish(true);
    const [line] = tty.lines();
    expect(line!.replace('\n', '').length).toBeLessThanOrEqual(39);
    expect(line).toContain('50.0 MiB / 100.0 MiB');
    expect(line).toMatch(/ETA/);
  });
});

describe('how often the bar is redrawn', () => {
  afterEach(() => vi.restoreAllMocks());

  test('100 updates 30 ms apart redraw it at most every 100 ms and at least every 150 ms, not only when two updates are 100 ms apart', () => {
    let now = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => now);
    const tty = terminal(120);
    const progress = startProgress({ stream: tty.stream, log: () => {} }, 'kernel', 100 << 20, 0);
    for (let i = 1; i <= 100; i++) {
      now = i * 30;
      progress.update(i << 20);
    }
    expect(tty.lines().length).toBeGreaterThanOrEqual(20);
    expect(tty.lines().length).toBeLessThanOrEqual(30);
  });
});
