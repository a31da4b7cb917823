/**
 * The boxes that take many minutes to make (debootstrap in an emulated VM), by the test files that
 * need them. test/boxes-setup.ts makes them in the background while the other files run
 * (test/sequencer.ts puts these files last); each file's own fetchTestBox then waits on the box's
 * lock, or finds the box current.
 */
export const SLOW_BOXES: Record<string, [box: string, arch: string][]> = {
  // The kiwi build is the longest file: its box is made first, and debian-system is made while it runs.
  'test/e2e/kiwi-debian.test.ts': [['debian-kiwi', 'x86_64']],
  'test/e2e/system.test.ts': [['debian-system', 'x86_64']],
  'test/images/system-aarch64.test.ts': [['debian-system', 'aarch64']],
  'test/images/images.test.ts': [
    ['debian-kiwi', 'x86_64'],
    ['debian-kiwi', 'aarch64'],
  ],
};
