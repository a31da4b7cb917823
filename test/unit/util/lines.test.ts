import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { readLines } from '../../../src/util/lines.js';

/** Feeds the chunks through readLines with a limit of 8 bytes; what it was told. */
function read(chunks: Buffer[]) {
  const input = new PassThrough();
  const seen: string[] = [];
  readLines(input, 8, { line: (line) => seen.push(line), tooLong: () => seen.push('TOO LONG') });
  for (const chunk of chunks) input.write(chunk);
  return seen;
}

describe('readLines', () => {
  test('lines split anywhere, a character split across chunks too', () => {
    const text = Buffer.from('ab\ncd€\n\nlast\n');
    expect(read([text.subarray(0, 1), text.subarray(1, 6), text.subarray(6, 8), text.subarray(8)])).toEqual(['ab', 'cd€', '', 'last']);
  });

  test('a line longer than the limit, ended or not, stops the reading once', () => {
    expect(read([Buffer.from('ok\n123456789\nmore\n')])).toEqual(['ok', 'TOO LONG']);
    expect(read([Buffer.from('1234'), Buffer.from('5678'), Buffer.from('9'), Buffer.from('\nmore\n')])).toEqual(['TOO LONG']);
    expect(read([Buffer.from('12345678\n')])).toEqual(['12345678']);
  });
});
