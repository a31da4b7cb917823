import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCHES, type Arch, hostArch } from '../../box/arch.js';
import { listCached } from '../../box/manage.js';
import type { Registry } from '../../box/registry.js';
import { probeKvm, recordedKvmVerdict } from '../../qemu/accel.js';
import { PROFILES } from '../../qemu/profiles.js';
import { findOnPath } from '../../util/path.js';
import { parseQueueName, queueName } from './protocol.js';

/** What a worker can run, as it announces it. */
export interface Capabilities {
  /** Guest architectures it has a qemu-system binary for. */
  arches: Arch[];
  /** KVM works for guests of the host's architecture. */
  kvm: boolean;
  /** Queue names (box@arch) of the box variants its registry has: the boxes it could fetch or make. */
  known: string[];
  /** Queue names of the box variants in its cache: builds of these start without a download. */
  cached: string[];
}

/** KVM as a run would find it: this boot's recorded verdict, else a probe with a cached kernel, else /dev/kvm opens. */
async function kvmUsable(cacheRoot: string, kernels: string[]): Promise<boolean> {
  const profile = PROFILES[hostArch()];
  const recorded = await recordedKvmVerdict(cacheRoot, profile);
  if (recorded) return recorded.usable;
  const opens = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(() => true, () => false);
  if (!opens || kernels.length === 0) return opens;
  return (await probeKvm(profile, kernels[0]!, 4000)).usable;
}

/** Queue names of the box variants in the cache (it changes as builds fetch boxes: announced again and again). */
export async function cachedQueues(cacheRoot: string): Promise<string[]> {
  return (await listCached(cacheRoot)).filter((variant) => variant.installed).map((variant) => queueName(variant.name, variant.arch));
}

/** Looks at this host: QEMU binaries, KVM, the registry's boxes, the cache. */
export async function probeCapabilities(cacheRoot: string, registry: Registry): Promise<Capabilities> {
  const arches = ARCHES.filter((arch) => findOnPath(PROFILES[arch].qemuBinary) !== undefined);
  const hostKernels = (await listCached(cacheRoot))
    .filter((variant) => variant.arch === hostArch() && variant.installed)
    .map(({ installed }) => join(installed!.dir, installed!.manifest.files.kernel.name));
  return {
    arches,
    kvm: arches.includes(hostArch()) && (await kvmUsable(cacheRoot, hostKernels)),
    known: [...registry.values()].flatMap((box) => (Object.keys(box.arches) as Arch[]).map((arch) => queueName(box.name, arch))).sort(),
    cached: await cachedQueues(cacheRoot),
  };
}

/** The worker has QEMU for the queue's architecture and knows its box. */
export function canRun(capabilities: Capabilities, queue: string): boolean {
  const parsed = parseQueueName(queue);
  return parsed !== undefined && capabilities.arches.includes(parsed.arch) && capabilities.known.includes(queue);
}

/**
 * The queues a worker takes jobs from, in the order it looks: those of boxes it has cached first
 * (their builds start without a download), then the others it can run; by name within each.
 */
export function queueOrder(queues: Iterable<string>, capabilities: Capabilities): string[] {
  const runnable = [...new Set(queues)].filter((queue) => canRun(capabilities, queue)).sort();
  const cached = (queue: string) => capabilities.cached.includes(queue);
  return [...runnable.filter(cached), ...runnable.filter((queue) => !cached(queue))];
}
