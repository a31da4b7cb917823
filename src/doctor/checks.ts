import { constants } from 'node:fs';
import { access, statfs } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { hostArch } from '../box/arch.js';
import { findPodman } from '../driver/container/podman.js';
import { PROFILES } from '../qemu/profiles.js';
import { recordedKvmVerdict } from '../qemu/accel.js';
import { namespacingFor, subordinateRange } from '../sharing/confine.js';
import { findSftpServer } from '../sharing/sshfs.js';
import { virtiofsUsability } from '../sharing/virtiofs.js';
import { runChild } from '../util/child.js';
import { formatBytes } from '../util/size.js';

/*
 * `boxbuild doctor`: what works on this host and what is missing, each with the command that fixes
 * it. Every check looks; none changes anything.
 */

export type Verdict = 'ok' | 'missing' | 'note';

export interface Check {
  name: string;
  verdict: Verdict;
  /** What was found, or why not. */
  detail: string;
  /** The command (or step) that fixes it. */
  fix?: string;
  /** Runs of the default kind (a build in the host's architecture over 9p) need it. */
  required: boolean;
}

const APT = 'apt-get install';
const LOW_SPACE = 10 * 1024 ** 3;

/** `program --version`'s first line, or undefined when it does not run. */
async function versionOf(program: string, args = ['--version']): Promise<string | undefined> {
  const result = await runChild(program, args, { timeoutMs: 10_000 });
  return result.exitCode === 0 ? (result.stdout || result.stderr).split('\n')[0]!.trim() : undefined;
}

const found = (name: string, detail: string | undefined, fix: string, required: boolean): Check =>
  detail === undefined ? { name, verdict: 'missing', detail: 'not found', fix, required } : { name, verdict: 'ok', detail, required };

async function qemuChecks(): Promise<Check[]> {
  const host = hostArch();
  const packages = { x86_64: 'qemu-system-x86', aarch64: 'qemu-system-arm' } as const;
  return Promise.all(
    (['x86_64', 'aarch64'] as const).map(async (arch) =>
      found(`QEMU for ${arch}${arch === host ? '' : ' guests (emulated)'}`, await versionOf(PROFILES[arch].qemuBinary), `${APT} ${packages[arch]}`, arch === host),
    ),
  );
}

/** KVM as the runs see it: the verdict of this boot's probe when a run made one, else what /dev/kvm allows. */
async function kvmCheck(cacheRoot: string): Promise<Check> {
  const name = 'KVM';
  const fix = 'enable virtualisation (VT-x/AMD-V) and load kvm_intel or kvm_amd; add yourself to the "kvm" group';
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (error) {
    return { name, verdict: 'note', detail: `cannot open /dev/kvm (${(error as NodeJS.ErrnoException).code}): runs use TCG, several times slower`, fix, required: false };
  }
  const verdict = await recordedKvmVerdict(cacheRoot, PROFILES[hostArch()]);
  if (!verdict) return { name, verdict: 'ok', detail: '/dev/kvm opens; the first run boots a kernel under KVM to check that it really works', required: false };
  return verdict.usable
    ? { name, verdict: 'ok', detail: 'a kernel booted under KVM (probed this boot)', required: false }
    : { name, verdict: 'note', detail: `not usable: ${verdict.reason}; runs use TCG`, fix, required: false };
}

async function sharingChecks(): Promise<Check[]> {
  const { uid, username } = userInfo();
  const virtiofs = await virtiofsUsability();
  const namespaces = await namespacingFor(false);
  const subids = uid === 0 || (await subordinateRange('/etc/subuid', username, uid)) !== undefined;
  return [
    { name: '9p sharing', verdict: 'ok', detail: 'built into QEMU', required: true },
    virtiofs.reason
      ? { name: 'virtiofs sharing', verdict: 'missing', detail: virtiofs.reason, fix: `${APT} qemu-system-common (or virtiofsd)${subids ? '' : `; usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${username}`}`, required: false }
      : { name: 'virtiofs sharing', verdict: 'ok', detail: `${virtiofs.daemon!.path} (${virtiofs.daemon!.flavor === 'c' ? "QEMU's C daemon" : 'the Rust daemon'})`, required: false },
    found('sshfs sharing', await findSftpServer(), `${APT} openssh-sftp-server`, false),
    namespaces.reason
      ? { name: 'user namespaces', verdict: 'missing', detail: namespaces.reason, fix: 'sysctl kernel.unprivileged_userns_clone=1 (and install util-linux for unshare)', required: false }
      : { name: 'user namespaces', verdict: 'ok', detail: 'the sharing daemons run in their own user, mount and PID namespaces', required: false },
    subids
      ? { name: 'subordinate ids', verdict: 'ok', detail: uid === 0 ? 'not needed as root' : `${username} has some in /etc/subuid`, required: false }
      : { name: 'subordinate ids', verdict: 'missing', detail: `${username} has none in /etc/subuid (Debian 12's C virtiofsd needs them)`, fix: `${APT} uidmap; usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${username}`, required: false },
  ];
}

async function toolChecks(): Promise<Check[]> {
  const tools: [name: string, program: string, args: string[], fix: string, required: boolean][] = [
    ['qemu-img (system boxes)', 'qemu-img', ['--version'], `${APT} qemu-utils`, false],
    ['apt-get, dpkg-deb (making boxes)', 'dpkg-deb', ['--version'], 'a Debian or Ubuntu host', false],
    ['xz (kernels of KIWI boxes)', 'xz', ['--version'], `${APT} xz-utils`, false],
    ['debootstrap (debian-system, debian-kiwi)', 'debootstrap', ['--version'], `${APT} debootstrap`, false],
    ['mkfs.ext4 (system disks)', 'mkfs.ext4', ['-V'], `${APT} e2fsprogs`, false],
    ['perl (loads the seccomp share filter)', 'perl', ['-e', 'print "perl $]\\n"'], `${APT} perl-base`, true],
    ['ssh, ssh-keygen (--channel ssh)', 'ssh', ['-V'], `${APT} openssh-client`, false],
  ];
  return Promise.all(tools.map(async ([name, program, args, fix, required]) => found(name, await versionOf(program, args), fix, required)));
}

/** podman for --container: found and able to run here, with what boxbuild passes it. */
async function podmanCheck(): Promise<Check> {
  const name = 'podman (--container)';
  try {
    const podman = await findPodman();
    const options = podman.command.slice(1).join(' ');
    return { name, verdict: 'ok', detail: `podman ${podman.version}, ${podman.rootless ? 'rootless' : 'as root'}${options ? ` (${options})` : ''}`, required: false };
  } catch (error) {
    return { name, verdict: 'missing', detail: (error as Error).message.replace(/;.*$/s, ''), fix: `${APT} --no-install-recommends podman runc`, required: false };
  }
}

/** Free space where the box cache is (or would be). */
async function spaceCheck(cacheRoot: string): Promise<Check> {
  let dir = cacheRoot;
  for (;;) {
    try {
      const { bavail, bsize } = await statfs(dir);
      const free = bavail * bsize;
      const detail = `${formatBytes(free)} free for ${cacheRoot}`;
      if (free >= LOW_SPACE) return { name: 'space for boxes', verdict: 'ok', detail, required: true };
      return { name: 'space for boxes', verdict: 'note', detail: `${detail}: a KIWI box and its builds need ~10 GiB`, fix: 'boxbuild box prune, or BOXBUILD_CACHE_DIR elsewhere', required: true };
    } catch {
      if (dir === dirname(dir)) return { name: 'space for boxes', verdict: 'missing', detail: `cannot look at ${cacheRoot}`, required: true };
      dir = dirname(dir);
    }
  }
}

/** Every check, in the order they are shown. */
export async function runChecks(cacheRoot: string): Promise<Check[]> {
  const node = { name: 'Node.js', verdict: 'ok' as const, detail: process.version, required: true };
  const groups = await Promise.all([qemuChecks(), kvmCheck(cacheRoot).then((check) => [check]), sharingChecks(), toolChecks(), podmanCheck().then((check) => [check]), spaceCheck(cacheRoot).then((check) => [check])]);
  return [node, ...groups.flat()];
}
