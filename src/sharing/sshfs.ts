import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { listenOnce } from '../qemu/sockets.js';
import { underShareFilter } from '../sandbox/exec.js';
import { confinedCommand, namespacingFor } from './confine.js';
import { Daemons } from './daemons.js';
import type { ActiveSharing, GuestMount, Share, SharingBackend } from './types.js';

const SFTP_SERVERS = ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/lib/ssh/sftp-server', '/usr/libexec/sftp-server'];

export async function findSftpServer(): Promise<string | undefined> {
  for (const path of SFTP_SERVERS) {
    if (await access(path).then(() => true, () => false)) return path;
  }
  return undefined;
}

/** The virtio-serial port that carries one share's SFTP session, named after the share's tag. */
export const sftpPortName = (share: Share) => `org.boxbuild.sftp.${share.tag}`;

/** The sftp-server command for one share: chrooted to a root that holds the share at /share; logs on stderr. */
export function sftpServerArgs(server: string, share: Share): string[] {
  return [server, '-e', '-d', '/share', '-l', 'ERROR', ...(share.readOnly ? ['-R'] : [])];
}

/** What the guest agent mounts: sshfs in passive mode over the share's port (see the agent). */
export function sshfsGuestMount(share: Share): GuestMount {
  const options = ['passive', 'idmap=none', 'max_conns=1', 'cache=yes', 'kernel_cache', share.readOnly ? 'ro' : 'rw'];
  return { modules: ['fuse'], fstype: 'sshfs', source: sftpPortName(share), target: share.guestPath, options: options.join(',') };
}

/**
 * sshfs without an SSH server: OpenSSH's sftp-server runs on the host as a child of boxbuild, its
 * stdin and stdout connected to a virtio-serial port, confined to the share (it sees nothing else of
 * the host). No sshd, no key, no TCP port, nothing interactive.
 */
export const sshfsBackend: SharingBackend = {
  name: 'sshfs',
  async start(shares, context): Promise<ActiveSharing> {
    const server = await findSftpServer();
    if (!server) throw new BoxbuildError('vmFailed', 'sshfs sharing needs OpenSSH\'s sftp-server (install "openssh-sftp-server")');
    const { namespacing, reason } = await namespacingFor(false);
    if (!namespacing) throw new BoxbuildError('vmFailed', `sshfs sharing is not usable: ${reason}`);
    const daemons = new Daemons();
    let stopped = false;
    const endpoints = await Promise.all(shares.map((_, index) => listenOnce(join(context.runDir, `sftp-${index}.sock`))));
    await Promise.all(shares.map((_, index) => mkdir(join(context.runDir, `sftp-root-${index}`))));
    shares.forEach((share, index) => {
      const chrootIn = join(context.runDir, `sftp-root-${index}`);
      const argv = confinedCommand({ namespacing, share: share.hostPath, readOnly: share.readOnly, chrootIn }, underShareFilter(sftpServerArgs(server, share)));
      // QEMU connects the port when it starts; the server then talks SFTP straight over the socket.
      void endpoints[index]!.connection.then((socket) => {
        if (!stopped) daemons.start(`sftp-server for share "${share.tag}"`, argv, { stdin: socket, stdout: socket });
      });
    });
    return {
      qemuArgs: [],
      devices: [],
      ports: shares.map((share, index) => ({ name: sftpPortName(share), socket: endpoints[index]!.path })),
      sharedMemory: false,
      mounts: shares.map(sshfsGuestMount),
      lost: daemons.lost,
      stop: async () => {
        stopped = true;
        endpoints.forEach((endpoint) => endpoint.close());
        await daemons.stop();
      },
    };
  },
};
