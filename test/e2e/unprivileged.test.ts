import { chownSync, cpSync, lstatSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { REPO } from '../helpers/env.js';
import { expectNoLeftovers } from '../helpers/box-cli.js';
import { tempDir } from '../helpers/temp.js';
import { type Account, ensureUser, reachableCli, userEnvironment } from '../helpers/user.js';

const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot)('as an unprivileged user', () => {
  let account: Account;
  let workspace: string;
  beforeAll(async () => {
    account = await ensureUser();
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
      env: userEnvironment(account, join(workspace, 'cache'), tmp),
      extendEnv: false,
    });
    expectNoLeftovers(tmp);
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
