import { cpSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { expect, test } from 'vitest';
import { expectNoLeftovers } from '../helpers/box-cli.js';
import { CLI, REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/* A value given with --env NAME=VALUE lands in the build's log and the --result file: both stay the user's alone. */

const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);

/** Every directory and file below `dir` but those in `skip`, with its mode. */
function modesBelow(dir: string, skip: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    if (!path.startsWith(skip) && !entry.isSymbolicLink()) found[relative(dir, path)] = mode(path);
  }
  return found;
}

test('the cache, the logs and states boxbuild writes there, and the --result file are private, under a umask of 022', async () => {
  // A cache as an older boxbuild left it: open to everyone.
  const cache = tempDir('bb-cache-');
  const boxes = join(cache, 'boxes/debian/x86_64');
  const version = readlinkSync(join(TEST_CACHE, 'boxes/debian/x86_64/current'));
  cpSync(join(TEST_CACHE, 'boxes/debian/x86_64', version), join(boxes, version), { recursive: true });
  symlinkSync(version, join(boxes, 'current'));
  const work = tempDir();
  const tmp = tempDir('tmp-');
  const result = join(work, 'result.json');
  const args = ['--box', 'debian', '--accel', 'tcg', '-q', '--no-update-check', '--env', 'SECRET=s3cr3t', '--result', result, '--', '--description', join(REPO, 'examples/hello'), '--target-dir', join(work, 'out')];
  await execa('sh', ['-c', 'chmod 755 "$1" && umask 022 && shift && exec "$@"', 'sh', cache, process.execPath, CLI, ...args], { env: { BOXBUILD_CACHE_DIR: cache, TMPDIR: tmp } });
  expectNoLeftovers(tmp);

  expect(readFileSync(result, 'utf8')).toContain('SECRET=s3cr3t');
  expect(mode(result)).toBe('600');
  expect(mode(cache)).toBe('700');
  const made = modesBelow(cache, join(cache, 'boxes'));
  const [log] = Object.keys(made).filter((path) => path.endsWith('.log'));
  expect(readFileSync(join(cache, log!), 'utf8')).toContain('SECRET=s3cr3t');
  // The log and the warm state the first run saved, with the directories around them.
  expect(Object.keys(made).some((path) => path.endsWith('state.json'))).toBe(true);
  expect(Object.entries(made).filter(([path, bits]) => bits !== (statSync(join(cache, path)).isDirectory() ? '700' : '600'))).toEqual([]);
});
