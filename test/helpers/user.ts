import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { inject } from 'vitest';
import { REPO } from './env.js';

/**
 * The unprivileged account end-to-end tests run boxbuild as: this test run's own, made by the first
 * test file that needs it (as root) and removed at the end of the run (see test/global-setup.ts).
 */
export const TEST_USER = inject('testUser');

export interface Account {
  uid: number;
  gid: number;
  home: string;
}

export async function ensureUser(): Promise<Account> {
  if ((await execa('id', ['-u', TEST_USER], { reject: false })).exitCode !== 0) {
    await execa('useradd', ['--create-home', '--shell', '/bin/sh', TEST_USER]);
  }
  const [uid, gid] = await Promise.all([execa('id', ['-u', TEST_USER]), execa('id', ['-g', TEST_USER])]);
  const { stdout: passwd } = await execa('getent', ['passwd', TEST_USER]);
  return { uid: Number(uid.stdout), gid: Number(gid.stdout), home: passwd.split(':')[5]! };
}

/** The CLI as the user can reach it: the checkout itself, or a copy when it lies in a private directory. */
export async function reachableCli(workspace: string): Promise<string> {
  const cli = join(REPO, 'dist/cli.js');
  if ((await execa('runuser', ['-u', TEST_USER, '--', 'test', '-r', cli], { reject: false })).exitCode === 0) return cli;
  const app = join(workspace, 'app');
  for (const part of ['dist', 'node_modules', 'package.json', 'boxes.json', 'src/guest/files']) {
    cpSync(join(REPO, part), join(app, part), { recursive: true, verbatimSymlinks: true });
  }
  return join(app, 'dist/cli.js');
}

/** The environment boxbuild gets when the user runs it: home, cache and TMPDIR of the test's choosing. */
export const userEnvironment = (account: Account, cache: string, tmp: string) => ({
  HOME: account.home,
  USER: TEST_USER,
  LOGNAME: TEST_USER,
  BOXBUILD_CACHE_DIR: cache,
  TMPDIR: tmp,
  PATH: process.env.PATH,
});
