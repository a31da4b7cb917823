import { defineConfig } from 'vitest/config';
import SlowBoxesLast from './test/sequencer.js';

/**
 * What every tier shares. (A tier does not extend the root's test options: it would run the root's
 * global setup once more.)
 */
const tier = {
  setupFiles: ['test/file-setup.ts'],
  // VM tests boot real QEMU under TCG on a 2-core machine: one test file at a time.
  fileParallelism: false,
  testTimeout: 120_000,
  hookTimeout: 300_000,
};

/** The test tiers, run in this order: `vitest run --project NAME` runs one (see README, Development). */
export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    // Every tier: the run's own temporary directory, removed and checked for leftovers at the end.
    globalSetup: ['test/global-setup.ts'],
    sequence: { sequencer: SlowBoxesLast },
    projects: [
      // Pure code: no VM, no box, no network.
      { test: { ...tier, name: 'unit', include: ['test/unit/**/*.test.ts'], sequence: { groupOrder: 0 } } },
      // The box manager against local HTTP servers.
      { test: { ...tier, name: 'box', include: ['test/box/**/*.test.ts', 'test/faults/box-*.test.ts'], sequence: { groupOrder: 1 } } },
      // Real QEMU: needs the debian boxes, made (once) by its global setup.
      {
        test: {
          ...tier,
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts', 'test/faults/run-*.test.ts', 'test/security/**/*.test.ts'],
          globalSetup: ['test/boxes-setup.ts'],
          sequence: { groupOrder: 2 },
        },
      },
      // Real image builds too slow for the default run (npm run test:images; not part of npm test).
      { test: { ...tier, name: 'images', include: ['test/images/**/*.test.ts'], globalSetup: ['test/boxes-setup.ts'], sequence: { groupOrder: 3 } } },
    ],
  },
});
