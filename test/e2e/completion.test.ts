import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { CLI, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/* The completion scripts, run by the real shell against the real CLI (as `boxbuild` on PATH). */

let bin: string;
let script: string;

beforeAll(async () => {
  bin = tempDir();
  writeFileSync(join(bin, 'boxbuild'), `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, { mode: 0o755 });
  script = join(tempDir(), 'boxbuild.bash');
  writeFileSync(script, (await runCli(['completion', 'bash'])).stdout);
});

/** What bash offers for the command line `line`, completing its last word. */
async function complete(line: string): Promise<string[]> {
  const words = line.split(' ');
  const program = `source "$1"; COMP_WORDS=(${words.map((word) => `'${word}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _boxbuild; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const { stdout } = await execa('bash', ['-c', program, 'bash', script], { env: { PATH: `${bin}:${process.env.PATH}`, BOXBUILD_CACHE_DIR: TEST_CACHE } });
  return stdout.split('\n').filter(Boolean).sort();
}

describe('bash completion', () => {
  test('commands, options of the command at hand, their values, and box names from the registry', async () => {
    expect(await complete('boxbuild ex')).toEqual(['exec']);
    expect(await complete('boxbuild exec --sha')).toEqual(['--share', '--sharing']);
    expect(await complete('boxbuild --sharing v')).toEqual(['virtiofs']);
    expect(await complete('boxbuild exec --arch a')).toEqual(['aarch64']);
    expect(await complete('boxbuild --box debian-')).toEqual(['debian-kiwi', 'debian-system']);
    expect(await complete('boxbuild box fe')).toEqual(['fetch']);
    expect(await complete('boxbuild box fetch debian-s')).toEqual(['debian-system']);
    expect(await complete('boxbuild box list --na')).toEqual(['--names']);
  });

  test('zsh gets the same script behind bashcompinit; fish gets its own; another shell is a usage error', async () => {
    expect((await runCli(['completion', 'zsh'])).stdout).toMatch(/^autoload -U \+X bashcompinit && bashcompinit\n# boxbuild completion for bash/);
    const fish = (await runCli(['completion', 'fish'])).stdout;
    expect(fish).toContain("complete -c boxbuild -l box -x -a '(boxbuild box list --names 2>/dev/null)'");
    expect(fish).toContain("complete -c boxbuild -n '__fish_use_subcommand' -a exec");
    const other = await runCli(['completion', 'tcsh']);
    expect([other.exitCode, other.stderr]).toEqual([2, 'boxbuild: error: completion: unknown shell "tcsh" (bash, zsh or fish)']);
  });
});
