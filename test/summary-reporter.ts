import type { RunnerTask } from 'vitest';
import type { Vitest } from 'vitest/node';
import type { Reporter } from 'vitest/reporters';

/**
 * Prints one plain closing line, "N passed, N failed, N skipped", as the very last output of the run
 * (after vitest's summary and the global teardowns). Failed counts failed tests, and also failed
 * hooks (afterAll, the leak check of test/file-setup.ts), files that did not load, and errors outside
 * tests (such as leftovers the teardown of test/global-setup.ts found).
 */
export default class SummaryReporter implements Reporter {
  onInit(vitest: Vitest): void {
    vitest.onClose(() => {
      const counts = { passed: 0, failed: vitest.state.getUnhandledErrors().length, skipped: 0 };
      const visit = (task: RunnerTask) => {
        if (task.type === 'suite') {
          if (task.result?.errors?.length) counts.failed++;
          task.tasks.forEach(visit);
        } else if (task.result?.state === 'pass') counts.passed++;
        else if (task.result?.state === 'fail') counts.failed++;
        else counts.skipped++;
      };
      vitest.state.getFiles().forEach(visit);
      process.stdout.write(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
    });
  }
}
