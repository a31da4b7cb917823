import { join } from 'node:path';
import { REPO } from './helpers/env.js';

/**
 * The boxes that take many minutes to make (debootstrap in an emulated VM), by the test files that
 * need them. test/boxes-setup.ts makes them in the background while the other files run
 * (test/sequencer.ts puts these files last); each file's own fetchTestBox then waits on the box's
 * lock, or finds the box current.
 */
export const SLOW_BOXES: Record<string, [box: string, arch: string][]> = {
  'test/e2e/kiwi-debian.test.ts': [['debian-kiwi', 'x86_64']],
  'test/images/system.test.ts': [['debian-system', 'x86_64']],
  'test/images/kiwi-container.test.ts': [['debian-kiwi', 'x86_64']],
  'test/images/system-aarch64.test.ts': [['debian-system', 'aarch64']],
  'test/images/images.test.ts': [
    ['debian-kiwi', 'x86_64'],
    ['debian-kiwi', 'aarch64'],
  ],
};

/**
 * Builds too long to wait for in their file's turn (a kiwi build in an emulated VM: about 17
 * minutes): test/boxes-setup.ts starts each in the background as soon as its box is made, beside the
 * other files; its file, run last, reads the result (helpers/background-build.ts). `args` gets the
 * build's target directory. They are the longest path of the run: their boxes are made first (at
 * niceness -5 as root), the builds run at normal CPU priority; the other slow boxes get only what
 * the test files leave idle.
 */
export const BACKGROUND_BUILDS: Record<string, { box: [box: string, arch: string]; args: (target: string) => string[] }> = {
  'test/e2e/kiwi-debian.test.ts': {
    box: ['debian-kiwi', 'x86_64'],
    args: (target) => ['--box', 'debian-kiwi', '--type', 'tbz', '--', '--description', join(REPO, 'examples/debian-kiwi'), '--target-dir', target],
  },
};
