import { cpSync, mkdirSync, readdirSync, statSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { REPO } from '../helpers/env.js';
import { processesMentioning, tempDir } from '../helpers/temp.js';

const USER = 'boxbuild-e2e';
const asRoot = process.getuid?.() === 0;

interface Account {
  uid: number;
  gid: number;
  home: string;
}

async function ensureUser(): Promise<Account> {
  if ((await execa('id', ['-u', USER], { reject: false })).exitCode !== 0) {
    await execa('useradd', ['--create-home', '--shell', '/bin/sh', USER]);
  }
  const [uid, gid] = await Promise.all([execa('id', ['-u', USER]), execa('id', ['-g', USER])]);
  const { stdout: passwd } = await execa('getent', ['passwd', USER]);
  return { uid: Number(uid.stdout), gid: Number(gid.stdout), home: passwd.split(':')[5]! };
}

/** The CLI as the user can reach it: the checkout itself, or a copy when it lies in a private directory. */
async function reachableCli(workspace: string): Promise<string> {
  const cli = join(REPO, 'dist/cli.js');
  if ((await execa('runuser', ['-u', USER, '--', 'test', '-r', cli], { reject: false })).exitCode === 0) return cli;
  const app = join(workspace, 'app');
  for (const part of ['dist', 'node_modules', 'package.json', 'boxes.json', 'src/guest/files']) {
    cpSync(join(REPO, part), join(app, part), { recursive: true, verbatimSymlinks: true });
  }
  return join(app, 'dist/cli.js');
}

describe.skipIf(!asRoot)('as an unprivileged user', () => {
  let account: Account;
  let workspace: string;
  beforeAll(async () => {
    account = await ensureUser();
    workspace = tempDir('bb-user-');
    chownSync(workspace, account.uid, account.gid);
  });

  test('the box is made without root and the build writes files the user owns', async () => {
    const cli = await reachableCli(workspace);
    const desc = join(workspace, 'desc');
    cpSync(join(REPO, 'examples/hello'), desc, { recursive: true });
    const cache = join(workspace, 'cache');
    const tmp = join(workspace, 'tmp');
    mkdirSync(tmp);
    for (const dir of [desc, tmp]) chownSync(dir, account.uid, account.gid);
    const result = await execa(process.execPath, [cli, '--box', 'debian', '--', '--description', desc, '--target-dir', join(workspace, 'out')], {
      uid: account.uid,
      gid: account.gid,
      cwd: workspace,
      reject: false,
      stdin: 'ignore',
      env: { HOME: account.home, USER, LOGNAME: USER, BOXBUILD_CACHE_DIR: cache, TMPDIR: tmp, PATH: process.env.PATH },
      extendEnv: false,
    });
    expect(result.stderr).toContain('making box debian');
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('hello: wrote /target/hello.tar.gz');
    for (const file of ['out', 'out/hello.tar.gz', 'out/hello', 'out/hello/message.txt']) {
      expect(statSync(join(workspace, file)).uid, file).toBe(account.uid);
    }
    expect(statSync(join(cache, 'boxes/debian/x86_64/current/kernel')).uid).toBe(account.uid);
    expect(readdirSync(tmp)).toEqual([]);
    expect(processesMentioning(tmp)).toEqual([]);
  });
});
