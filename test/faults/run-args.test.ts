import { describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';

/* Many and long arguments arrive byte-exact (the agent takes them in one block: linear, not quadratic). */

const echoArgs = ['sh', '-c', 'for a; do printf "%s\\0" "$a"; done', 'sh'];
const tricky = ["it's", "''", '$(x) `y` "q" \\', '', 'two\nlines\n\n', '*', '-n', 'ünï 日本'];

describe('arguments in bulk', () => {
  test.each([
    ['5000 arguments', [...tricky, ...Array.from({ length: 5000 }, (_, i) => `argument ${i} '${i}'`)]],
    ['1 MiB of arguments', [...tricky, ...Array.from({ length: 16 }, (_, i) => `${i}'`.repeat(32 * 1024))]],
  ])('%s', async (_, args) => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', ...echoArgs, ...args], { stripFinalNewline: false });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.split('\0').slice(0, -1)).toEqual(args);
  });
});
