import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BoxbuildError, usageError } from '../errors.js';
import type { Arch } from '../box/arch.js';
import { isObject, readJsonFile, writeFileAtomic } from '../box/json-file.js';
import { Child, lastWords } from '../util/child.js';
import type { Accel, MachineProfile } from './profiles.js';

export type AccelRequest = Accel | 'auto';

export interface AccelContext {
  profile: MachineProfile;
  hostArch: Arch;
  /** A kernel the probe boots: KVM counts as working only when this kernel prints on its console. */
  kernel: string;
  /** Where the verdict is remembered until the host reboots. */
  cacheRoot: string;
  probeTimeoutMs?: number;
  notice: (line: string) => void;
}

export interface KvmVerdict {
  usable: boolean;
  reason: string;
}

const bootId = async () => (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => 'unknown')).trim();

/**
 * Boots the kernel under KVM and waits for its first console line. A /dev/kvm that exists is not
 * enough: on some hosts (nested virtualisation) the guest hangs forever before printing anything.
 */
export async function probeKvm(profile: MachineProfile, kernel: string, timeoutMs: number): Promise<KvmVerdict> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (error) {
    return { usable: false, reason: `cannot open /dev/kvm (${(error as NodeJS.ErrnoException).code})` };
  }
  const args = [
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-machine', profile.machine],
    ...['-accel', 'kvm', '-cpu', profile.cpu.kvm, '-m', '256M', '-kernel', kernel, '-serial', 'stdio'],
    ...['-append', `console=${profile.serialConsole} panic=-1`],
  ];
  const child = new Child(profile.qemuBinary, args, { timeoutMs });
  let printed = false;
  for (const stream of [child.process.stdout, child.process.stderr]) {
    stream?.on('data', (chunk: Buffer) => {
      if (!printed && chunk.toString().includes('Linux version')) {
        printed = true;
        child.process.kill('SIGKILL');
      }
    });
  }
  const result = await child.ended;
  if (printed) return { usable: true, reason: 'the probe kernel booted' };
  if (result.timedOut) return { usable: false, reason: `a kernel under KVM printed nothing within ${timeoutMs / 1000} s` };
  return { usable: false, reason: `QEMU with KVM failed: ${lastWords(result, result.all)}` };
}

const isVerdict = (value: unknown): value is KvmVerdict => isObject(value) && typeof value.usable === 'boolean' && typeof value.reason === 'string';
const isVerdicts = (value: unknown): value is Record<string, KvmVerdict> => isObject(value) && Object.values(value).every(isVerdict);

/** The verdict a run recorded since the host booted, if any (`boxbuild doctor` reads it too). */
export async function recordedKvmVerdict(cacheRoot: string, profile: MachineProfile): Promise<KvmVerdict | undefined> {
  const cached = await readJsonFile(join(cacheRoot, 'kvm-probe.json'), isVerdicts);
  return cached?.[`${await bootId()} ${profile.qemuBinary}`];
}

/**
 * Probes KVM once per host boot and QEMU binary; the verdict is kept in the cache (an unreadable one
 * is probed again). `probed`: this call made the verdict (the first run since the host booted).
 */
async function cachedKvmVerdict(context: AccelContext): Promise<KvmVerdict & { probed: boolean }> {
  const recorded = await recordedKvmVerdict(context.cacheRoot, context.profile);
  if (recorded) return { ...recorded, probed: false };
  const file = join(context.cacheRoot, 'kvm-probe.json');
  const key = `${await bootId()} ${context.profile.qemuBinary}`;
  const verdict = await probeKvm(context.profile, context.kernel, context.probeTimeoutMs ?? 4000);
  await writeFileAtomic(file, JSON.stringify({ [key]: verdict })).catch(() => {});
  return { ...verdict, probed: true };
}

/** Chooses the accelerator: KVM only when it really works and the guest is the host's architecture. */
export async function resolveAccel(request: AccelRequest, context: AccelContext): Promise<Accel> {
  const foreign = context.profile.arch !== context.hostArch;
  if (foreign) {
    if (request === 'kvm') throw usageError(`--accel kvm: a ${context.profile.arch} guest cannot use KVM on this ${context.hostArch} host`);
    context.notice(`${context.profile.arch} on a ${context.hostArch} host runs under software emulation (TCG): expect it to be several times slower`);
    return 'tcg';
  }
  if (request === 'tcg') return 'tcg';
  const verdict = await cachedKvmVerdict(context);
  if (verdict.usable) return 'kvm';
  if (request === 'kvm') throw new BoxbuildError('vmFailed', `--accel kvm: KVM is not usable here: ${verdict.reason}`);
  // Said once per host boot, by the run that found out.
  if (verdict.probed) context.notice(`KVM is not usable here (${verdict.reason}); using software emulation (TCG) until the host reboots`);
  return 'tcg';
}
