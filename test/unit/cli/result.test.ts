import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test, vi } from 'vitest';
import { ResultFile, resultArgument } from '../../../src/cli/result.js';
import { tempDir } from '../../helpers/temp.js';

describe('--result FILE', () => {
  test.each([
    ['in a missing directory', (dir: string) => join(dir, 'missing', 'r.json'), /missing is no directory$/],
    ['that is a directory', (dir: string) => (mkdirSync(join(dir, 'r')), join(dir, 'r')), /a directory is in its place$/],
  ])('%s is refused before the run (exit 2), and nothing is written', async (_, path, message) => {
    const dir = tempDir();
    const file = path(dir);
    const run = vi.fn(async () => 0);
    await expect(new ResultFile(file, [], () => {}).record(run)).rejects.toMatchObject({ exitCode: 2, message: expect.stringMatching(message) });
    expect(run).not.toHaveBeenCalled();
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test("a file that cannot be written after the run is a warning: the build's status stands, no temporary file stays", async () => {
    const dir = tempDir();
    const file = join(dir, 'r.json');
    const warn = vi.fn();
    const status = await new ResultFile(file, [], warn).record(async () => {
      mkdirSync(file); // the build put a directory in its place meanwhile
      return 3;
    });
    expect(status).toBe(3);
    expect(warn.mock.calls).toEqual([[expect.stringMatching(/^warning: could not write --result .*r\.json: EISDIR/)]]);
    expect(readdirSync(dir)).toEqual(['r.json']);
  });

  test('an error that ended the run is recorded with its kind', async () => {
    const file = join(tempDir(), 'r.json');
    await new ResultFile(file, ['exec'], () => {}).refused(new Error('boom'));
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ exitCode: 70, error: { kind: 'internal', message: 'boom' }, argv: ['exec'] });
  });

  test('the --result of a command line commander refused', () => {
    expect(resultArgument(['exec', '--frobnicate', '--result', 'r.json'])).toBe('r.json');
    expect(resultArgument(['--result=r.json', '--box', 'debian'])).toBe('r.json');
    expect(resultArgument(['exec', '--box', 'debian'])).toBeUndefined();
  });
});
