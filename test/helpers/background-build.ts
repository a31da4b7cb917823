import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inject } from 'vitest';
import { BACKGROUND_BUILDS } from '../slow-boxes.js';
import { runIsolated } from './box-cli.js';
import type { CliResult } from './cli.js';
import { tempDir } from './temp.js';

/**
 * The build of test file `file` that test/boxes-setup.ts started in the background (BACKGROUND_BUILDS),
 * once it has ended: its result, its target directory and its private TMPDIR (for expectNoLeftovers),
 * moved into the test's own directory. A build the setup could not start (its box could not be made
 * in the background) is run here.
 */
export async function backgroundBuild(file: string): Promise<{ result: CliResult; target: string; tmp: string }> {
  const dir = inject('backgroundBuilds')[file];
  if (!dir) throw new Error(`${file} has no background build: see test/slow-boxes.ts`);
  while (!existsSync(join(dir, 'exit'))) await sleep(1000);
  const status = readFileSync(join(dir, 'exit'), 'utf8').trim();
  const mine = join(tempDir(), 'build');
  if (status === 'not started') {
    const target = join(mine, 'target');
    return { result: await runIsolated(BACKGROUND_BUILDS[file]!.args(target)), target, tmp: tempDir('tmp-') };
  }
  renameSync(dir, mine);
  const read = (name: string) => readFileSync(join(mine, name), 'utf8').replace(/\n$/, '');
  return { result: { exitCode: /^\d+$/.test(status) ? Number(status) : -1, stdout: read('stdout'), stderr: read('stderr') }, target: join(mine, 'target'), tmp: join(mine, 'tmp') };
}
