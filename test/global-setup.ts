import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { TestProject } from 'vitest/node';
import { describeProcess, killProcesses, processesOf } from './helpers/temp.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The user account the run may create for tests as an unprivileged user; the teardown removes it. */
    testUser: string;
  }
}

/**
 * Every tier: everything the test run creates lies in one run directory in the system temp dir, made
 * here and TMPDIR for all test files and the processes they start (test/file-setup.ts gives each
 * file a directory of its own in it). The teardown removes the run directory whole and the run's test
 * user, and fails the run when it left anything behind: a process, or a file the test files did not
 * remove themselves.
 */
export default function setup(project: TestProject): () => Promise<void> {
  const runDir = mkdtempSync(join(tmpdir(), 'boxbuild-tests-'));
  chmodSync(runDir, 0o711); // the unprivileged user's workspace lies inside
  process.env.TMPDIR = runDir;
  const testUser = `boxbuild-e2e-${process.pid}`;
  project.provide('testUser', testUser);

  return async () => {
    // vitest's own workers (children of this process) inherited TMPDIR too and are not leftovers.
    const processes = processesOf(runDir).filter((p) => p.ppid !== process.pid);
    killProcesses(processes);
    // A test file whose tests were all filtered out (-t) runs no afterAll: its directory stays, empty.
    const skippedFile = (name: string) => name.startsWith('f-') && readdirSync(join(runDir, name)).length === 0;
    const files = readdirSync(runDir)
      .filter((name) => !skippedFile(name))
      .map((name) => join(runDir, name));
    rmSync(runDir, { recursive: true, force: true, maxRetries: 3 });
    if ((await execa('id', ['-u', testUser], { reject: false })).exitCode === 0) await execa('userdel', ['--remove', testUser]);
    const leftovers = [...processes.map((p) => `process ${describeProcess(p)}`), ...files];
    if (leftovers.length > 0) {
      const error = new Error(`the test run left behind (now removed):\n  ${leftovers.join('\n  ')}`);
      console.error(`\n${error.message}`);
      // Counted as a failure in the closing line of test/summary-reporter.ts, which comes after this.
      project.vitest.state.catchError(error, 'Leftovers');
      process.exitCode = 1;
    }
  };
}
