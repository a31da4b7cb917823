import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { type ChildEnd, Child, lastWords, runChild } from '../util/child.js';
import { BoxbuildError } from '../errors.js';
import { diesWithParent } from '../util/orphans.js';

/** The host end of an SSH channel: a key pair made for this run, and the forwarded port. */
export interface SshSetup {
  key: string;
  port: number;
  authorizedKey: string;
}

/** A free TCP port on 127.0.0.1, chosen by the kernel (never a fixed port such as 10022). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Makes the run's ed25519 key pair in its private directory (never the user's keys, never ~/.ssh). */
export async function prepareSsh(runDir: string): Promise<SshSetup> {
  const key = join(runDir, 'id_ed25519');
  const made = await runChild('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'boxbuild-run', '-f', key]);
  if (made.exitCode !== 0) throw new BoxbuildError('vmFailed', `cannot make an SSH key for the run (is openssh-client installed?): ${lastWords(made)}`);
  const port = await freePort();
  return { key, port, authorizedKey: (await readFile(`${key}.pub`, 'utf8')).trim() };
}

/** ssh's argv: only the run's key, only the pinned host key, no config files, nothing interactive. */
export function sshArgs(setup: Pick<SshSetup, 'key' | 'port'>, knownHosts: string): string[] {
  const options = [
    'IdentitiesOnly=yes',
    'BatchMode=yes',
    'StrictHostKeyChecking=yes',
    `UserKnownHostsFile=${knownHosts}`,
    'GlobalKnownHostsFile=/dev/null',
    'HostKeyAlgorithms=ssh-ed25519',
    'CheckHostIP=no',
    'LogLevel=ERROR',
    'ConnectTimeout=30',
  ];
  return ['-F', '/dev/null', '-T', '-i', setup.key, '-p', String(setup.port), ...options.flatMap((o) => ['-o', o]), 'root@127.0.0.1', '/usr/lib/boxbuild/agent', '--session'];
}

/**
 * Runs the command over SSH: the host key the guest reported is the only one accepted; the request
 * lines go to the session agent's stdin, followed by `io.stdin` when given (the command's stdin);
 * its stdout and stderr are streamed to ours.
 */
export async function startSshSession(
  setup: SshSetup,
  runDir: string,
  hostKey: string,
  request: string,
  io: { stdin?: Readable; stdout: Writable; stderr: Writable },
): Promise<{ ended: Promise<ChildEnd> }> {
  const knownHosts = join(runDir, 'known_hosts');
  await writeFile(knownHosts, `[127.0.0.1]:${setup.port} ${hostKey.trim()}\n`);
  const [file, ...args] = diesWithParent(['ssh', ...sshArgs(setup, knownHosts)]);
  const { stdin } = io;
  const input = stdin ? Readable.from((async function* () { yield request; yield* stdin; })()) : request;
  const child = new Child(file!, args, { stdio: 'pipe', input, collect: false });
  child.process.stdout!.pipe(io.stdout, { end: false });
  child.process.stderr!.pipe(io.stderr, { end: false });
  return { ended: child.ended };
}
