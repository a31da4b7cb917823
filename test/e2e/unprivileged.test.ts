import { chownSync, cpSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, inject, test } from 'vitest';
import { REPO } from '../helpers/env.js';
import { processesMentioning, tempDir } from '../helpers/temp.js';

/** An account of this test run's own, removed at the end of the run (see test/global-setup.ts). */
const USER = inject('testUser');
const asRoot = process.getuid?.() === 0;

interface Account {
  uid: number;
  gid: number;
  home: string;
}

async function createUser(): Promise<Account> {
  await execa('useradd', ['--create-home', '--shell', '/bin/sh', USER]);
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
    account = await createUser();
    workspace = tempDir('bb-user-');
    chownSync(workspace, account.uid, account.gid);
  });

  /** Runs the CLI as the user, with the user's own cache and TMPDIR inside the workspace. */
  async function runAsUser(cli: string, args: string[]) {
    const tmp = join(workspace, 'tmp');
    mkdirSync(tmp, { recursive: true });
    chownSync(tmp, account.uid, account.gid);
    const result = await execa(process.execPath, [cli, ...args], {
      uid: account.uid,
      gid: account.gid,
      cwd: workspace,
      reject: false,
      stdin: 'ignore',
      env: { HOME: account.home, USER, LOGNAME: USER, BOXBUILD_CACHE_DIR: join(workspace, 'cache'), TMPDIR: tmp, PATH: process.env.PATH },
      extendEnv: false,
    });
    expect(readdirSync(tmp)).toEqual([]);
    expect(processesMentioning(tmp)).toEqual([]);
    return result;
  }

  test('the box is made without root and the build writes files the user owns', async () => {
    const cli = await reachableCli(workspace);
    const desc = join(workspace, 'desc');
    cpSync(join(REPO, 'examples/hello'), desc, { recursive: true });
    chownSync(desc, account.uid, account.gid);
    const result = await runAsUser(cli, ['--box', 'debian', '--', '--description', desc, '--target-dir', join(workspace, 'out')]);
    expect(result.stderr).toContain('making box debian');
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('hello: wrote /target/hello.tar.gz');
    for (const file of ['out', 'out/hello.tar.gz', 'out/hello', 'out/hello/message.txt']) {
      expect(statSync(join(workspace, file)).uid, file).toBe(account.uid);
    }
    expect(statSync(join(workspace, 'cache/boxes/debian/x86_64/current/kernel')).uid).toBe(account.uid);
  });

  test.each(['9p', 'virtiofs', 'sshfs'])('over %s, files the guest writes belong to the user', async (backend) => {
    const cli = await reachableCli(workspace);
    const shared = join(workspace, `shared-${backend}`);
    mkdirSync(shared);
    chownSync(shared, account.uid, account.gid);
    const script = 'echo data > /out/file && mkdir /out/dir && ln -s file /out/link && cat /out/file';
    const result = await runAsUser(cli, ['exec', '--box', 'debian', '-q', `--sharing=${backend}`, '--share', `${shared}:/out`, '--', 'sh', '-c', script]);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('data');
    for (const file of ['file', 'dir', 'link']) expect(lstatSync(join(shared, file)).uid, file).toBe(account.uid);
  });
});
