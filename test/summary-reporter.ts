import type { RunnerTask, RunnerTestFile } from 'vitest';
import type { Reporter } from 'vitest/reporters';

/** Prints one plain closing line, "N passed, N failed, N skipped", after vitest's own summary. */
export default class SummaryReporter implements Reporter {
  onFinished(files: RunnerTestFile[] = []): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    const visit = (task: RunnerTask) => {
      // A file that failed to load has no tests but must not read as a clean run.
      if (task.type === 'suite' && task.tasks.length === 0 && task.result?.state === 'fail') counts.failed++;
      else if (task.type === 'suite') task.tasks.forEach(visit);
      else if (task.result?.state === 'pass') counts.passed++;
      else if (task.result?.state === 'fail') counts.failed++;
      else counts.skipped++;
    };
    files.forEach(visit);
    process.stdout.write(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
  }
}
