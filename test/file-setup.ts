import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { describeProcess, killProcesses, processesOf } from './helpers/temp.js';

/*
 * Runs before every test file: the file gets a directory of its own in the run directory (see
 * test/global-setup.ts), TMPDIR for the file and every process it starts. After the file, also
 * when it failed, the directory is removed, and processes started from the file that still run are
 * killed and fail it.
 */
const fileDir = mkdtempSync(join(tmpdir(), 'f-'));
chmodSync(fileDir, 0o711); // the unprivileged user's workspace lies inside
process.env.TMPDIR = fileDir;

afterAll(() => {
  const running = processesOf(fileDir);
  killProcesses(running);
  rmSync(fileDir, { recursive: true, force: true, maxRetries: 3 }); // retried while killed processes end
  expect(running.map(describeProcess), 'processes the test file started and left running').toEqual([]);
});
