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
    expect(await complete('boxbuild ma')).toEqual(['matrix']);
    expect(await complete('boxbuild matrix --s')).toEqual(['--slots']);
    expect(await complete('boxbuild matrix --q')).toEqual(['--queue', '--quiet']);
    expect(await complete('boxbuild wo')).toEqual(['worker']);
    expect(await complete('boxbuild worker --sl')).toEqual(['--slots']);
  });

  test('exec: the first word that is not an option (nor an option\'s value) is the command, whose words are its own; --cpus and --memory', async () => {
    expect(await complete('boxbuild exec --box debian ls --sh')).toEqual([]);
    expect(await complete('boxbuild exec --share . -e X --sh')).toEqual(['--share', '--sharing']);
    expect(await complete('boxbuild exec --cp')).toEqual(['--cpu', '--cpus']);
    expect(await complete('boxbuild --mem')).toEqual(['--memory']);
  });

  test('another shell is a usage error', async () => {
    const other = await runCli(['completion', 'tcsh']);
    expect([other.exitCode, other.stderr]).toEqual([2, 'boxbuild: error: completion: unknown shell "tcsh" (bash, zsh or fish)']);
  });
});

describe('zsh completion', () => {
  /**
   * What zsh offers: the script behind bashcompinit, whose compgen calls the completion function in
   * sh emulation and leaves matching the current word to zsh (done here as zsh does, by prefix).
   */
  async function completeZsh(line: string): Promise<string[]> {
    const file = join(tempDir(), 'boxbuild.zsh');
    writeFileSync(file, (await runCli(['completion', 'zsh'])).stdout);
    const words = line.split(' ');
    const call = `emulate -L sh; COMP_WORDS=(${words.map((word) => `'${word}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _boxbuild; print -l -- "\${COMPREPLY[@]}"`;
    const program = `source "$1"; complete_line() { ${call}; }; complete_line`;
    const { stdout } = await execa('zsh', ['-f', '-c', program, 'zsh', file], { env: { PATH: `${bin}:${process.env.PATH}`, BOXBUILD_CACHE_DIR: TEST_CACHE, HOME: tempDir() } });
    return stdout.split('\n').filter((offer) => offer && offer.startsWith(words.at(-1)!)).sort();
  }

  test('the bash script runs in zsh: commands, options of the command at hand, values, box names', async () => {
    expect(await completeZsh('boxbuild sh')).toEqual(['shell']);
    expect(await completeZsh('boxbuild exec --sha')).toEqual(['--share', '--sharing']);
    expect(await completeZsh('boxbuild --sharing v')).toEqual(['virtiofs']);
    expect(await completeZsh('boxbuild --box debian-')).toEqual(['debian-kiwi', 'debian-system']);
    expect(await completeZsh('boxbuild box fetch debian-s')).toEqual(['debian-system']);
  });
});

describe('fish completion', () => {
  /** What fish offers for the command line (complete -C), the descriptions left off. */
  async function completeFish(line: string): Promise<string[]> {
    const file = join(tempDir(), 'boxbuild.fish');
    writeFileSync(file, (await runCli(['completion', 'fish'])).stdout);
    const { stdout } = await execa('fish', ['--no-config', '-c', 'source $argv[1]; complete -C $argv[2]', file, line], {
      env: { PATH: `${bin}:${process.env.PATH}`, BOXBUILD_CACHE_DIR: TEST_CACHE, HOME: tempDir() },
    });
    return stdout.split('\n').filter(Boolean).map((entry) => entry.split('\t')[0]!).sort();
  }

  test('commands, options of the command at hand, their values, and box names from the registry', async () => {
    expect(await completeFish('boxbuild ex')).toEqual(['exec']);
    expect(await completeFish('boxbuild exec --sha')).toEqual(['--share', '--sharing']);
    expect(await completeFish('boxbuild --sharing v')).toEqual(['virtiofs']);
    expect(await completeFish('boxbuild --box debian-')).toEqual(['debian-kiwi', 'debian-system']);
    expect(await completeFish('boxbuild box fe')).toEqual(['fetch']);
    expect(await completeFish('boxbuild ma')).toEqual(['matrix']);
    expect(await completeFish('boxbuild matrix --sl')).toEqual(['--slots']);
  });
});
