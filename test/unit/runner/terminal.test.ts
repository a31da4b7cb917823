import { describe, expect, test } from 'vitest';
import { escapeWatcher } from '../../../src/runner/terminal.js';

describe('the escape (Enter ~ .)', () => {
  const typed = (...chunks: string[]) => {
    const watch = escapeWatcher();
    return chunks.some((chunk) => watch(Buffer.from(chunk)));
  };

  test('at the start, or after Enter, also split over reads', () => {
    expect(typed('~.')).toBe(true);
    expect(typed('ls\r~.')).toBe(true);
    expect(typed('ls\r', '~', '.')).toBe(true);
    expect(typed('ls\n~.')).toBe(true);
  });

  test('not within a line, nor with anything between ~ and .', () => {
    expect(typed('cd ~.')).toBe(false);
    expect(typed('a~.')).toBe(false);
    expect(typed('\r~~.')).toBe(false);
    expect(typed('\r~x.')).toBe(false);
  });
});
