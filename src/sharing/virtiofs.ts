import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import type { PluggableDevice } from '../qemu/argv.js';
import { deviceOnBus } from '../qemu/profiles.js';
import { isWithin } from '../util/file.js';
import { underShareFilter } from '../sandbox/exec.js';
import { type Namespacing, confinedCommand, namespacingFor } from './confine.js';
import { runChild } from '../util/child.js';
import { Daemons } from './daemons.js';
import type { ActiveSharing, Share, SharingBackend, SharingContext } from './types.js';

/** The Rust virtiofsd (newer distributions) or the C daemon that QEMU 7.2 ships (Debian 12). */
export interface Virtiofsd {
  path: string;
  flavor: 'rust' | 'c';
}

const SEARCH = ['virtiofsd', '/usr/libexec/virtiofsd', '/usr/lib/virtiofsd', '/usr/lib/qemu/virtiofsd', '/usr/libexec/qemu/virtiofsd'];

/** Finds a virtiofsd (the given one, else on PATH or in the usual libexec places) and tells its flavor. */
export async function findVirtiofsd(explicit?: string): Promise<Virtiofsd | undefined> {
  for (const path of explicit ? [explicit] : SEARCH) {
    const text = (await runChild(path, ['--help'])).all;
    if (text.includes('--shared-dir')) return { path, flavor: 'rust' };
    // As a non-root user, the C daemon fails with "setgroups() failed" before it prints its help.
    if (text.includes('source=') || text.includes('setgroups() failed')) return { path, flavor: 'c' };
  }
  return undefined;
}

/** Escapes a value for libfuse's comma-separated `-o` options (the C daemon's). */
export const fuseOptionValue = (value: string) => value.replace(/[\\,]/g, (c) => `\\${c}`);

/**
 * The daemon's own arguments for one share. The description does not change during a build, so
 * the guest may cache it for good (6x the stats/s of cache=auto); written shares use cache=auto,
 * which keeps shared mmap working (cache=none would refuse it on the guest's 6.1 kernel). Extended
 * attributes stay off (the C daemon's default; the share filter refuses them anyway).
 */
export function virtiofsdArgs(daemon: Virtiofsd, socket: string, share: Share): string[] {
  const cache = share.readOnly ? 'always' : 'auto';
  if (daemon.flavor === 'rust') {
    // In a user namespace the Rust daemon cannot build its own namespace sandbox; the confinement is ours.
    return [daemon.path, `--socket-path=${socket}`, `--shared-dir=${share.hostPath}`, `--cache=${cache}`, '--sandbox=none'];
  }
  return [daemon.path, `--socket-path=${socket}`, '-o', `source=${fuseOptionValue(share.hostPath)}`, '-o', `cache=${cache}`, '-o', 'sandbox=namespace', '-o', 'no_xattr'];
}

export function virtiofsDevice(share: Share, index: number, socket: string, context: SharingContext): PluggableDevice {
  return {
    chardev: { id: `vfs${index}`, path: socket },
    driver: deviceOnBus(context.profile, 'vhost-user-fs'),
    id: `vfsdev${index}`,
    props: { 'queue-size': 1024, tag: share.tag },
  };
}

export interface VirtiofsUsability {
  daemon?: Virtiofsd;
  namespacing?: Namespacing;
  /** Why virtiofs cannot be used here. */
  reason?: string;
}

/** Whether virtiofs works for this user on this host, and how. */
export async function virtiofsUsability(explicitDaemon?: string): Promise<VirtiofsUsability> {
  const daemon = await findVirtiofsd(explicitDaemon);
  if (!daemon) {
    return { reason: explicitDaemon ? `${explicitDaemon} is not a virtiofsd` : 'no virtiofsd found (install the "virtiofsd" or "qemu-system-common" package)' };
  }
  const { namespacing, reason } = await namespacingFor(daemon.flavor === 'c');
  return namespacing ? { daemon, namespacing } : { daemon, reason: `${daemon.path} cannot run for this user: ${reason}` };
}

export function virtiofsBackend(options: { virtiofsd?: string } = {}): SharingBackend {
  return {
    name: 'virtiofs',
    async start(shares, context): Promise<ActiveSharing> {
      const { daemon, namespacing, reason } = await virtiofsUsability(options.virtiofsd);
      if (!daemon || !namespacing) throw new BoxbuildError('vmFailed', `virtiofs sharing is not usable: ${reason}`);
      // The C daemon's pid file needs a private /run, which would hide anything below /run.
      const privateRun = daemon.flavor === 'c';
      for (const path of [context.runDir, ...shares.map((share) => share.hostPath)]) {
        if (privateRun && isWithin(path, '/run')) {
          throw new BoxbuildError('vmFailed', `virtiofs sharing cannot serve ${path}: with ${daemon.path}, shares and TMPDIR must lie outside /run`);
        }
      }
      const daemons = new Daemons();
      try {
        const sockets = shares.map((_, index) => join(context.runDir, `virtiofs-${index}.sock`));
        const started = shares.map((share, index) => {
          const command = underShareFilter(virtiofsdArgs(daemon, sockets[index]!, share));
          const argv = confinedCommand({ namespacing, share: share.hostPath, readOnly: share.readOnly, privateRun }, command);
          return daemons.start(`virtiofsd for share "${share.tag}"`, argv);
        });
        await Promise.all(started.map((d, index) => d.waitForSocket(sockets[index]!)));
        const devices = shares.map((share, index) => virtiofsDevice(share, index, sockets[index]!, context));
        return {
          qemuArgs: [],
          devices,
          ports: [],
          sharedMemory: true,
          mounts: shares.map((share) => ({ modules: ['virtiofs'], fstype: 'virtiofs', source: share.tag, target: share.guestPath, options: share.readOnly ? 'ro' : 'rw' })),
          lost: daemons.lost,
          stop: () => daemons.stop(),
        };
      } catch (error) {
        await daemons.stop();
        throw error;
      }
    },
  };
}
