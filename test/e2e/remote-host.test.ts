import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { VERSION } from '../../src/version.js';
import { untilOutput, untilProcesses } from '../helpers/box-cli.js';
import { runCli, startCli } from '../helpers/cli.js';
import { CLI, REPO, TEST_CACHE } from '../helpers/env.js';
import { freePort } from '../helpers/http.js';
import { processesOf, tempDir } from '../helpers/temp.js';
import { type Account, TEST_USER, ensureUser } from '../helpers/user.js';

/** Resolves once something listens on 127.0.0.1:`port`. */
async function untilListening(port: number): Promise<void> {
  for (let tries = 0; tries < 200; tries++) {
    const socket = connect(port, '127.0.0.1');
    const up = await new Promise<boolean>((resolve) => socket.once('connect', () => resolve(true)).once('error', () => resolve(false)));
    socket.destroy();
    if (up) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on port ${port}`);
}

/*
 * --host against a real sshd this file starts on 127.0.0.1 (a high port, keys made here), logging
 * in as the test run's second user, whose boxbuild has a box cache and TMPDIR of this file's.
 */

const SSHD = join(REPO, '.cache/tools/sshd');
const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot)('a build on a build host over SSH (--host)', () => {
  let account: Account;
  let base: string;
  /** The remote user's TMPDIR: every process of its runs names it. */
  let remoteTmp: string;
  let sshd: ChildProcess;
  let host: string;
  let env: Record<string, string>;

  /** `bin/boxbuild` for the remote user: runs `cli` (this checkout's, or a copy). */
  function wrapper(name: string, cli: string): string {
    const path = join(base, 'user', name);
    writeFileSync(path, `#!/bin/sh\nexec ${process.execPath} ${cli} "$@"\n`, { mode: 0o755 });
    return path;
  }

  beforeAll(async () => {
    if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: run scripts/setup-debian`);
    account = await ensureUser();
    // Without PAM, sshd refuses an account whose password is locked ("!", as useradd leaves it); "*" has none either.
    await execa('usermod', ['-p', '*', TEST_USER]);
    base = tempDir('bb-remote-');
    chmodSync(base, 0o711);
    const keys = join(base, 'keys'); // root's: sshd's host key, the client's key and config
    const user = join(base, 'user'); // the remote user's: its cache, TMPDIR, authorized key
    mkdirSync(keys, { mode: 0o700 });
    mkdirSync(user);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keys, 'host')]);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keys, 'client')]);
    writeFileSync(join(user, 'authorized_keys'), readFileSync(join(keys, 'client.pub')));
    remoteTmp = join(user, 'tmp');
    mkdirSync(remoteTmp);
    // The made debian box, borrowed: its current version copied into the user's cache.
    const boxes = join(TEST_CACHE, 'boxes/debian/x86_64');
    const version = readlinkSync(join(boxes, 'current'));
    const userBoxes = join(user, 'cache/boxes/debian/x86_64');
    cpSync(join(boxes, version), join(userBoxes, version), { recursive: true });
    symlinkSync(version, join(userBoxes, 'current'));
    await execa('chown', ['-R', `${account.uid}:${account.gid}`, user]);
    wrapper('boxbuild', CLI);

    const port = await freePort();
    host = `${TEST_USER}@127.0.0.1:${port}`;
    const config = join(keys, 'sshd_config');
    writeFileSync(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(keys, 'host')}`,
        `PidFile ${join(keys, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(user, 'authorized_keys')}`,
        `AllowUsers ${TEST_USER}`,
        'UsePAM no',
        'StrictModes no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        `SetEnv BOXBUILD_CACHE_DIR=${join(user, 'cache')} TMPDIR=${remoteTmp}`,
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    sshd = spawn(SSHD, ['-D', '-f', config], { stdio: 'ignore' });
    await untilListening(port);
    writeFileSync(join(keys, 'known_hosts'), `[127.0.0.1]:${port} ${readFileSync(join(keys, 'host.pub'), 'utf8')}`);
    writeFileSync(
      join(keys, 'ssh_config'),
      ['Host *', `  IdentityFile ${join(keys, 'client')}`, '  IdentitiesOnly yes', `  UserKnownHostsFile ${join(keys, 'known_hosts')}`, '  GlobalKnownHostsFile /dev/null', '  StrictHostKeyChecking yes', '  LogLevel ERROR', ''].join('\n'),
    );
    env = { BOXBUILD_SSH_COMMAND: `ssh -F ${join(keys, 'ssh_config')}`, BOXBUILD_REMOTE_COMMAND: join(user, 'boxbuild') };
  });

  afterAll(async () => {
    if (sshd?.exitCode !== null || sshd.signalCode !== null) return;
    sshd.kill('SIGTERM');
    await once(sshd, 'exit');
  });

  /** A copy of examples/hello (or a description whose build runs `script`). */
  function description(script?: string): string {
    const dir = tempDir('desc-');
    cpSync(join(REPO, 'examples/hello'), dir, { recursive: true });
    if (script) writeFileSync(join(dir, 'build'), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return dir;
  }

  const build = (desc: string, out: string, extra: string[] = [], more: string[] = []) => ['--host', host, '--box', 'debian', ...extra, '--', '--description', desc, '--target-dir', out, ...more];
  const qemuOfRemoteRuns = () => processesOf(remoteTmp).filter((p) => /qemu-system/.test(p.command)).map((p) => p.command.slice(0, 80));
  const remoteRunDirs = () => readdirSync(remoteTmp).filter((name) => name.startsWith('boxbuild-remote-'));

  test('the build runs there: output streamed, exit status, the target directory with its provenance back; a second run sends only what changed', async () => {
    const desc = description();
    const out = join(tempDir(), 'out');
    const first = await runCli(build(desc, out, ['-v'], ['extra']), { env });
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toContain('hello: extra arguments: extra');
    expect(first.stderr).toContain(`sent 2 of 2 files`);
    expect(readFileSync(join(out, 'hello/message.txt'), 'utf8')).toBe('Hello from a throwaway VM.\n');
    expect(JSON.parse(readFileSync(join(out, 'boxbuild-provenance.json'), 'utf8'))).toMatchObject({ box: 'debian' });
    expect(existsSync(join(out, 'hello.tar.gz'))).toBe(true);

    writeFileSync(join(desc, 'message.txt'), 'changed\n');
    const second = await runCli(build(desc, out, ['-v']), { env });
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stderr).toContain('sent 1 of 2 files (8 B)');
    expect(readFileSync(join(out, 'hello/message.txt'), 'utf8')).toBe('changed\n');
    expect(remoteRunDirs()).toEqual([]);
  });

  test("two builds at once, and a failing build's exit status; -e NAME takes this host's value", async () => {
    const desc = description();
    const failing = description('echo "failing with $SECRET"; exit 3');
    const [one, two, three] = await Promise.all([
      runCli(build(desc, join(tempDir(), 'out')), { env }),
      runCli(build(desc, join(tempDir(), 'out')), { env }),
      runCli(build(failing, join(tempDir(), 'out'), ['-e', 'SECRET']), { env: { ...env, SECRET: 'this host\'s value' } }),
    ]);
    expect([one.exitCode, two.exitCode], `${one.stderr}\n${two.stderr}`).toEqual([0, 0]);
    expect(three.exitCode, three.stderr).toBe(3);
    expect(three.stdout).toContain("failing with this host's value");
  });

  test.each([
    ['Ctrl-C (SIGINT) ends the run with 130', 130, /interrupted; the VM was stopped/],
    ['--timeout ends the run with 124', 124, /did not finish within --timeout 4 s/],
    ['a dropped connection (ssh killed) is exit 76, one line', 76, /^boxbuild: error: lost the connection to the build host .*; its boxbuild stops the remote VM$/m],
  ])('%s, and the remote VM is stopped', async (_, status, message) => {
    const child = startCli(build(description('echo started; sleep 120'), join(tempDir(), 'out'), status === 124 ? ['--timeout', '4s'] : []), { env });
    if (status !== 124) await untilOutput(child, 'started');
    if (status === 130) child.kill('SIGINT');
    else if (status === 76) for (const ssh of processesOf(base).filter((p) => p.ppid === child.pid && !p.command.includes('sshd'))) process.kill(ssh.pid, 'SIGKILL');
    const result = await child;
    expect(result.exitCode, String(result.stderr)).toBe(status);
    expect(String(result.stderr)).toMatch(message);
    if (status === 76) expect(String(result.stderr).trim().split('\n')).toHaveLength(1);
    await untilProcesses(remoteTmp, () => expect(qemuOfRemoteRuns()).toEqual([]));
    await untilProcesses(remoteTmp, () => expect(remoteRunDirs()).toEqual([]));
  });

  test('another boxbuild version on the build host, and a host that cannot be reached, are clear errors (exit 69)', async () => {
    const other = join(base, 'other');
    cpSync(join(REPO, 'dist'), join(other, 'dist'), { recursive: true });
    symlinkSync(join(REPO, 'node_modules'), join(other, 'node_modules'));
    writeFileSync(join(other, 'package.json'), JSON.stringify({ version: '0.0.0-other', type: 'module' }));
    const mismatch = await runCli(build(description(), join(tempDir(), 'out')), { env: { ...env, BOXBUILD_REMOTE_COMMAND: wrapper('other-boxbuild', join(other, 'dist/cli.js')) } });
    expect(mismatch.exitCode).toBe(69);
    expect(mismatch.stderr).toBe(`boxbuild: error: the build host ${host} runs boxbuild 0.0.0-other, this is ${VERSION}: install the same version on both`);

    const nobody = `${TEST_USER}@127.0.0.1:${await freePort()}`;
    const closed = await runCli(build(description(), join(tempDir(), 'out')).map((word) => (word === host ? nobody : word)), { env });
    expect(closed.exitCode).toBe(69);
    expect(closed.stderr).toMatch(/^boxbuild: error: cannot start boxbuild on the build host .*: ssh: connect to host 127.0.0.1 port \d+: Connection refused$/);
  });

  test('doctor --host checks the build host and its version', async () => {
    const result = await runCli(['doctor', '--host', host], { env });
    expect(result.stdout).toContain(`ok      build host ${host}  boxbuild ${VERSION}, as here\n`);
    expect(result.stdout).toMatch(/^ok +9p sharing +built into QEMU$/m);
    expect([0, 1]).toContain(result.exitCode);
  });
});
