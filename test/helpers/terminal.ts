import { readFileSync, readlinkSync } from 'node:fs';
import { execa } from 'execa';
import { vi } from 'vitest';
import { CLI, TEST_CACHE } from './env.js';
import { tempDir } from './temp.js';

/** A word for sh, single-quoted. */
export const shellWord = (word: string) => `'${word.replaceAll("'", "'\\''")}'`;

/**
 * Runs boxbuild on a fresh pseudo-terminal (util-linux `script`) of 33 rows and 77 columns, with a
 * private TMPDIR: what the test writes is typed into the terminal, what the terminal shows is
 * collected (line ends as \n). `before` runs in the terminal's shell first; after boxbuild ends the
 * shell prints MODE-KEPT when the terminal's mode is what it was before, and exits with boxbuild's
 * status.
 */
export function onTerminal(args: string[], before = '') {
  const tmp = tempDir('tmp-');
  const boxbuild = [process.execPath, CLI, ...args].map(shellWord).join(' ');
  const script = `stty rows 33 cols 77; ${before} mode=$(stty -g); ${boxbuild}; status=$?; [ "$(stty -g)" = "$mode" ] && echo MODE-KEPT; exit $status`;
  const child = execa('script', ['-qfec', script, '/dev/null'], {
    stdin: 'pipe',
    reject: false,
    env: { TMPDIR: tmp, BOXBUILD_CACHE_DIR: TEST_CACHE, TERM: 'xterm-256color' },
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // The typing side stays open until the end: script(1) types a byte of its own into the terminal when its input ends.
  void child.finally(() => child.stdin!.destroy());
  const shown = () => output.replaceAll('\r\n', '\n');
  return {
    tmp,
    child,
    shown,
    type: (keys: string) => child.stdin!.write(keys),
    /** The pseudo-terminal's device (its shell's stdin): \`stty -F\` on it resizes the terminal. */
    device: () => {
      const shell = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0];
      return readlinkSync(`/proc/${shell}/fd/0`);
    },
    /** Resolves once the terminal has shown `text`. */
    until: (text: string) =>
      vi.waitFor(
        () => {
          if (!shown().includes(text)) throw new Error(`the terminal has not shown ${JSON.stringify(text)}; it shows:\n${shown()}`);
        },
        { timeout: 120_000, interval: 50 },
      ),
  };
}
