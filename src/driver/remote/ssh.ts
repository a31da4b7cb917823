import { Child } from '../../util/child.js';
import type { HostSpec } from './host.js';

/**
 * The user's ssh, with their config and agent: `ssh` or $BOXBUILD_SSH_COMMAND (as GIT_SSH_COMMAND:
 * words for the shell, e.g. `ssh -F ~/box.conf -i ~/.ssh/build`). The remote command is
 * `boxbuild remote-serve`, or $BOXBUILD_REMOTE_COMMAND followed by `remote-serve` (boxbuild is not
 * on the remote PATH).
 */
export function sshArgv(spec: HostSpec, env: NodeJS.ProcessEnv = process.env): string[] {
  const ssh = env.BOXBUILD_SSH_COMMAND?.trim() || 'ssh';
  const remote = env.BOXBUILD_REMOTE_COMMAND?.trim() || 'boxbuild';
  // A dead network is noticed within a minute; no terminal, no password prompt (stdin is the protocol's).
  const options = ['-T', '-o', 'BatchMode=yes', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4'];
  const destination = [...(spec.port ? ['-p', String(spec.port)] : []), ...(spec.user ? ['-l', spec.user] : []), '--', spec.host];
  return ['/bin/sh', '-c', `exec ${ssh} "$@"`, 'ssh', ...options, ...destination, `${remote} remote-serve`];
}

/** Starts the SSH session: its stdin and stdout carry the protocol; in a process group of its own (Ctrl-C reaches it through boxbuild). */
export function startSsh(spec: HostSpec): Child {
  const [file, ...args] = sshArgv(spec);
  return new Child(file!, args, { stdio: ['pipe', 'pipe', 'pipe'], collect: false, detached: true });
}
