import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CLI, freePort, median, seconds, table } from './measure.js';

const RUNS = 5;
const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** The many-files description: this many files of this size besides examples/hello's. */
const FILES = 1000;
const FILE_BYTES = 10 * 1024;

/** An sshd on 127.0.0.1 (the one scripts/setup-debian installs) letting this user in with a key of its own; `ssh` is the BOXBUILD_SSH_COMMAND for it. */
async function startSshd(dir: string, env: NodeJS.ProcessEnv): Promise<{ sshd: ChildProcess; host: string; ssh: string }> {
  for (const key of ['host', 'client']) await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, key)]);
  const port = await freePort();
  const lines = [`Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host')}`, `PidFile ${join(dir, 'pid')}`, `AuthorizedKeysFile ${join(dir, 'client.pub')}`];
  lines.push('UsePAM no', 'StrictModes no', 'PasswordAuthentication no', `SetEnv BOXBUILD_CACHE_DIR=${env.BOXBUILD_CACHE_DIR} TMPDIR=${tmpdir()}`);
  writeFileSync(join(dir, 'sshd_config'), `${lines.join('\n')}\n`);
  const sshd = spawn(join(REPO, '.cache/tools/sshd'), ['-D', '-f', join(dir, 'sshd_config')], { stdio: 'ignore' });
  for (let up = false; !up; await sleep(50)) {
    const socket = connect(port, '127.0.0.1');
    up = await new Promise<boolean>((resolve) => socket.once('connect', () => resolve(true)).once('error', () => resolve(false)));
    socket.destroy();
  }
  writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${readFileSync(join(dir, 'host.pub'), 'utf8')}`);
  const ssh = `ssh -i ${join(dir, 'client')} -o IdentitiesOnly=yes -o UserKnownHostsFile=${join(dir, 'known_hosts')} -o LogLevel=ERROR`;
  return { sshd, host: `${userInfo().username}@127.0.0.1:${port}`, ssh };
}

/**
 * A hello build via `--host` to an sshd on 127.0.0.1 against the same build run here (same box
 * cache, warm), and the description sync: a description of 1000 more files sent whole, then again
 * with one file changed.
 */
export async function benchRemote(env: NodeJS.ProcessEnv): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'boxbuild-bench-remote-'));
  const { sshd, host, ssh } = await startSshd(dir, env);
  const remoteEnv = { ...env, BOXBUILD_SSH_COMMAND: ssh, BOXBUILD_REMOTE_COMMAND: `${process.execPath} ${CLI}` };
  try {
    await execa(process.execPath, [CLI, 'box', 'fetch', 'debian', '-q'], { env });
    const hello = join(dir, 'hello');
    cpSync(join(REPO, 'examples/hello'), hello, { recursive: true });
    const many = join(dir, 'many');
    cpSync(hello, many, { recursive: true });
    mkdirSync(join(many, 'data'));
    const salt = `${Date.now()}`; // contents the build host has never seen
    for (let i = 0; i < FILES; i++) writeFileSync(join(many, 'data', `f${i}`), `${salt} ${i}\n`.padEnd(FILE_BYTES, '.'));
    const build = async (description: string, remote: boolean) => {
      const args = [...(remote ? ['--host', host] : []), '--box', 'debian', '-v', '--', '--description', description, '--target-dir', join(dir, 'out')];
      const started = process.hrtime.bigint();
      const result = await execa(process.execPath, [CLI, ...args], { env: remote ? remoteEnv : env, stdin: 'ignore', reject: false });
      if (result.exitCode !== 0) throw new Error(`boxbuild ${args.join(' ')} failed (${result.exitCode}): ${result.stderr}`);
      return { wall: Number(process.hrtime.bigint() - started) / 1e9, sent: /sent (\d+ of \d+ files \([^)]*\))/.exec(result.stderr)?.[1] ?? '' };
    };
    const medianWall = async (description: string, remote: boolean, change?: (run: number) => void) => {
      const walls: number[] = [];
      let sent = '';
      for (let i = 0; i < RUNS; i++) {
        change?.(i);
        ({ wall: walls[i], sent } = await build(description, remote));
      }
      return { wall: median(walls), sent };
    };
    await build(hello, false); // a warm state for the runs below
    const rows: string[][] = [];
    const local = await medianWall(hello, false);
    const remote = await medianWall(hello, true);
    rows.push(['examples/hello, here', seconds(local.wall), '']);
    rows.push(['examples/hello, --host 127.0.0.1', `${seconds(remote.wall)} (+${seconds(remote.wall - local.wall)})`, remote.sent]);
    const first = await build(many, true);
    rows.push([`hello + ${FILES} files of ${FILE_BYTES / 1024} KiB, --host, first run`, seconds(first.wall), first.sent]);
    const changed = await medianWall(many, true, (run) => writeFileSync(join(many, 'message.txt'), `changed ${salt} ${run}\n`));
    rows.push([`the same, one file changed`, seconds(changed.wall), changed.sent]);
    const manyLocal = await medianWall(many, false);
    rows.push([`the same, here`, seconds(manyLocal.wall), '']);
    return table(['hello build in debian x86_64 (TCG, warm)', `wall, median of ${RUNS}`, 'sent'], rows);
  } finally {
    sshd.kill('SIGTERM');
    await once(sshd, 'exit');
    rmSync(dir, { recursive: true, force: true });
  }
}
