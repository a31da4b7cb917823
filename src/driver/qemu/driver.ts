import { join } from 'node:path';
import { listenOnce } from '../../qemu/sockets.js';
import { type SharingName, sharingBackend } from '../../sharing/index.js';
import type { Driver } from '../types.js';
import { type QemuRun, machineFor } from './machine.js';
import { savedState, vmShape, warmBlocker, warmStart } from './warm.js';

/*
 * The local QEMU driver: shares through a sharing backend (9p, virtiofs, sshfs), the agent's channel
 * on virtio-serial ports whose host ends are Unix sockets in the run's private directory, guests
 * booted or restored from a saved state (warm.ts).
 */

export interface QemuDriverOptions extends QemuRun {
  cacheRoot: string;
  sharing: SharingName;
  virtiofsd?: string;
  bootTimeoutMs: number;
  /** Why this run never starts warm (--cold, --box-debug); undefined when it may. */
  coldBecause?: string;
}

export function qemuDriver(options: QemuDriverOptions): Driver {
  const { runDir, profile } = options;
  return {
    async share(ctx, shares) {
      const sharing = await sharingBackend(options.sharing, { virtiofsd: options.virtiofsd }).start(shares, { runDir, profile });
      ctx.defer(() => sharing.stop());
      return sharing;
    },

    async connect(ctx) {
      const listen = (name: string) => listenOnce(join(runDir, `${name}.sock`));
      const [control, stdin, stdout, stderr] = await Promise.all([listen('ctl'), listen('in'), listen('out'), listen('err')]);
      const ends = { control, stdin, stdout, stderr };
      ctx.defer(() => Object.values(ends).forEach((end) => end.close()));
      return ends;
    },

    async boot(ctx, plan) {
      const machine = await machineFor(ctx, options, plan, false);
      await machine.disk.prepare();
      return (await machine.launch(ctx)).guest;
    },

    async warm(ctx, plan) {
      const blocker = options.coldBecause ?? warmBlocker(options.snapshot);
      if (blocker) {
        ctx.detail(`cold boot: ${blocker}`);
        return undefined;
      }
      const machine = await machineFor(ctx, options, plan, true);
      const state = await savedState(options.cacheRoot, vmShape(machine.spec, runDir, plan.shares, options.installed));
      return warmStart(options, machine, state);
    },
  };
}
