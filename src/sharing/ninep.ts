import { type MachineProfile, virtioDevice } from '../qemu/profiles.js';
import { qemuOptionValue } from '../qemu/argv.js';
import type { ActiveSharing, GuestMount, Share, SharingBackend } from './types.js';

/** 512000 bytes is the largest msize the Linux virtio transport accepts (128 pages less headers). */
export const NINEP_MSIZE = 512000;

/**
 * QEMU arguments for one 9p share. `security_model=none` makes files the guest writes belong to
 * the user running QEMU (so to the user running boxbuild), and ignores the guest's chown calls.
 */
export function ninePQemuArgs(share: Share, index: number, profile: MachineProfile): string[] {
  const fsdev = [
    'local',
    `id=fs${index}`,
    `path=${qemuOptionValue(share.hostPath)}`,
    'security_model=none',
    'multidevs=remap',
    ...(share.readOnly ? ['readonly=on'] : []),
  ].join(',');
  return ['-fsdev', fsdev, '-device', `${virtioDevice(profile, '9p')},fsdev=fs${index},mount_tag=${share.tag}`];
}

export function ninePGuestMount(share: Share): GuestMount {
  // The description does not change during a build, so its pages and metadata may be cached;
  // written shares keep mmap support without caching data (the host sees writes at once).
  const cache = share.readOnly ? 'cache=loose' : 'cache=mmap';
  return {
    modules: ['9pnet_virtio', '9p'],
    fstype: '9p',
    source: share.tag,
    target: share.guestPath,
    options: ['trans=virtio', 'version=9p2000.L', `msize=${NINEP_MSIZE}`, cache, share.readOnly ? 'ro' : 'rw'].join(','),
  };
}

export const ninePBackend: SharingBackend = {
  name: '9p',
  async start(shares, { profile }): Promise<ActiveSharing> {
    return {
      qemuArgs: shares.flatMap((share, index) => ninePQemuArgs(share, index, profile)), // QEMU serves 9p itself
      devices: [],
      ports: [],
      sharedMemory: false,
      mounts: shares.map(ninePGuestMount),
      stop: async () => {},
    };
  },
};
