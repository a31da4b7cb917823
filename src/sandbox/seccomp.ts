/*
 * The seccomp filter every host-side process that touches a share runs under (QEMU with its 9p
 * server, virtiofsd, sftp-server). Whatever the guest asks of them, no file they create or change
 * can be setuid/setgid, a device node, a FIFO, a socket or a whiteout, owned by another user, or
 * carry extended attributes (file capabilities): those system calls fail with EPERM.
 *
 * Every rule refuses up front, on the call's own arguments. None relies on a step after it: a daemon
 * that creates a file and then fixes its owner or mode (QEMU's 9p server: mknod, chown, chmod, and
 * an unlink when one fails) leaves a window in which guest threads hard-link the file elsewhere in
 * the share and write into it. The mode is inspected wherever it enters the kernel, so a new call
 * that takes a mode must get a rule here (and a case in test/unit/seccomp.test.ts).
 *
 * Hand-built classic BPF: the filter is loaded by perl (src/sandbox/exec.ts), which cannot reach
 * libseccomp without a native module. A pure function of the host architecture.
 */

import { usageError } from '../errors.js';

export type HostArch = 'x86_64' | 'aarch64';

/** System call numbers: x86_64's own table, and the generic table aarch64 uses. */
const SYSCALLS = {
  x86_64: {
    auditArch: 0xc000003e,
    open: 2, creat: 85, openat: 257, openat2: 437,
    mkdir: 83, mkdirat: 258, mknod: 133, mknodat: 259,
    chmod: 90, fchmod: 91, fchmodat: 268, fchmodat2: 452,
    chown: 92, fchown: 93, lchown: 94, fchownat: 260,
    setuid: 105, setgid: 106, setreuid: 113, setregid: 114, setresuid: 117, setresgid: 119, setfsuid: 122, setfsgid: 123,
    setxattr: 188, lsetxattr: 189, fsetxattr: 190, setxattrat: 463,
    renameat2: 316, io_uring_setup: 425,
  },
  aarch64: {
    auditArch: 0xc00000b7,
    openat: 56, openat2: 437,
    mkdirat: 34, mknodat: 33,
    fchmod: 52, fchmodat: 53, fchmodat2: 452,
    fchown: 55, fchownat: 54,
    setuid: 146, setgid: 144, setreuid: 145, setregid: 143, setresuid: 147, setresgid: 149, setfsuid: 151, setfsgid: 152,
    setxattr: 5, lsetxattr: 6, fsetxattr: 7, setxattrat: 463,
    renameat2: 276, io_uring_setup: 425,
  },
} as const;

type SyscallName = Exclude<keyof (typeof SYSCALLS)['x86_64'], 'auditArch'>;

const EPERM = 1;
const ENOSYS = 38;
const RET_ALLOW = 0x7fff0000;
const retErrno = (errno: number) => 0x00050000 | errno;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const SET_ID_BITS = 0o6000;
const O_CREAT = 0o100;
/** __O_TMPFILE alone: O_TMPFILE adds O_DIRECTORY, whose value differs between architectures. */
const O_TMPFILE = 0o20000000;
const RENAME_WHITEOUT = 4;
/** A uid/gid argument of -1 ("leave unchanged"), as the filter sees its low 32 bits. */
const UNCHANGED_ID = 0xffffffff;

/** What a rule checks before letting a call through. */
type Check =
  | { kind: 'deny'; errno: number }
  /** Fails when argument `arg` has any of `bits` (a mode's setuid and setgid bits, a flag). */
  | { kind: 'noBits'; arg: number; bits: number }
  /** open-like calls: with O_CREAT or O_TMPFILE in `flags`, the mode `arg` must have no set-id bit. */
  | { kind: 'createMode'; flags: number; arg: number }
  /** mknod: a regular file (type 0 or S_IFREG) without set-id bits, nothing special. */
  | { kind: 'regularNode'; arg: number }
  /** Every id argument must be 0 (the user the process runs as) or -1. */
  | { kind: 'ownIds'; args: number[] };

const noSetId = (arg: number): Check => ({ kind: 'noBits', arg, bits: SET_ID_BITS });

/** The policy, by system call (calls a table lacks, e.g. open on aarch64, are left out). */
const POLICY: Array<[SyscallName, Check]> = [
  // Creating a file: its mode is used with O_CREAT, and with O_TMPFILE, whose file a link makes
  // visible later (linkat with AT_EMPTY_PATH or through /proc/self/fd).
  ['open', { kind: 'createMode', flags: 1, arg: 2 }],
  ['openat', { kind: 'createMode', flags: 2, arg: 3 }],
  ['creat', noSetId(1)],
  // Its mode hides in a struct the filter cannot read; callers fall back to openat.
  ['openat2', { kind: 'deny', errno: ENOSYS }],
  // The kernel drops set-id bits from mkdir's mode (a directory only inherits its parent's setgid
  // bit); the rule does not count on it.
  ['mkdir', noSetId(1)],
  ['mkdirat', noSetId(2)],
  // mknod makes regular files too (9p's Tmknod, FUSE_MKNOD), with the full mode: type and set-id bits.
  ['mknod', { kind: 'regularNode', arg: 1 }],
  ['mknodat', { kind: 'regularNode', arg: 2 }],
  ['chmod', noSetId(1)],
  ['fchmod', noSetId(1)],
  ['fchmodat', noSetId(2)],
  ['fchmodat2', noSetId(2)],
  // A whiteout is a character device (0/0) left at the old name, made without CAP_MKNOD; virtiofsd
  // passes FUSE_RENAME2's flags through.
  ['renameat2', { kind: 'noBits', arg: 4, bits: RENAME_WHITEOUT }],
  ['chown', { kind: 'ownIds', args: [1, 2] }],
  ['lchown', { kind: 'ownIds', args: [1, 2] }],
  ['fchown', { kind: 'ownIds', args: [1, 2] }],
  ['fchownat', { kind: 'ownIds', args: [2, 3] }],
  // virtiofsd takes on the guest caller's ids to create files: only the user's own are allowed.
  ['setuid', { kind: 'ownIds', args: [0] }],
  ['setgid', { kind: 'ownIds', args: [0] }],
  ['setreuid', { kind: 'ownIds', args: [0, 1] }],
  ['setregid', { kind: 'ownIds', args: [0, 1] }],
  ['setresuid', { kind: 'ownIds', args: [0, 1, 2] }],
  ['setresgid', { kind: 'ownIds', args: [0, 1, 2] }],
  ['setfsuid', { kind: 'ownIds', args: [0] }],
  ['setfsgid', { kind: 'ownIds', args: [0] }],
  // security.capability would give a file capabilities on the host; no share needs xattrs.
  ['setxattr', { kind: 'deny', errno: EPERM }],
  ['lsetxattr', { kind: 'deny', errno: EPERM }],
  ['fsetxattr', { kind: 'deny', errno: EPERM }],
  ['setxattrat', { kind: 'deny', errno: EPERM }],
  // io_uring performs opens and chmods that seccomp never sees.
  ['io_uring_setup', { kind: 'deny', errno: ENOSYS }],
];

/** One classic BPF instruction, with jump targets as labels until assembled. */
interface Instruction {
  code: number;
  k: number;
  jt?: string;
  jf?: string;
  label?: string;
}

const LD_ABS = 0x20;
const JEQ = 0x15;
const JGE = 0x35;
const JSET = 0x45;
const AND = 0x54;
const RET = 0x06;

/** seccomp_data: nr at 0, arch at 4, the low 32 bits of argument i at 16 + 8i (little-endian hosts). */
const load = (offset: number): Instruction => ({ code: LD_ABS, k: offset });
const loadArg = (arg: number) => load(16 + 8 * arg);
const ret = (k: number, label?: string): Instruction => ({ code: RET, k, label });

function checkCode(check: Check, label: string): Instruction[] {
  const deny = `${label}:deny`;
  const allow = 'allow';
  switch (check.kind) {
    case 'deny':
      return [ret(retErrno(check.errno), label)];
    case 'noBits':
      return [{ ...loadArg(check.arg), label }, { code: JSET, k: check.bits, jt: deny, jf: allow }, ret(retErrno(EPERM), deny)];
    case 'createMode':
      return [
        { ...loadArg(check.flags), label },
        { code: JSET, k: O_CREAT | O_TMPFILE, jt: `${label}:mode`, jf: allow },
        { ...loadArg(check.arg), label: `${label}:mode` },
        { code: JSET, k: SET_ID_BITS, jt: deny, jf: allow },
        ret(retErrno(EPERM), deny),
      ];
    case 'regularNode':
      return [
        { ...loadArg(check.arg), label },
        { code: JSET, k: SET_ID_BITS, jt: deny },
        { code: AND, k: S_IFMT },
        { code: JEQ, k: 0, jt: allow, jf: `${label}:reg` },
        { code: JEQ, k: S_IFREG, jt: allow, jf: deny, label: `${label}:reg` },
        ret(retErrno(EPERM), deny),
      ];
    case 'ownIds':
      return [
        ...check.args.flatMap((arg, index): Instruction[] => {
          const next = index + 1 < check.args.length ? `${label}:${index + 1}` : allow;
          return [
            { ...loadArg(arg), label: index === 0 ? label : `${label}:${index}` },
            { code: JEQ, k: 0, jt: next, jf: `${label}:${index}:unchanged` },
            { code: JEQ, k: UNCHANGED_ID, jt: next, jf: deny, label: `${label}:${index}:unchanged` },
          ];
        }),
        ret(retErrno(EPERM), deny),
      ];
  }
}

/** Resolves labels to forward jump offsets and encodes struct sock_filter[] (8 bytes each). */
function assemble(program: Instruction[]): Buffer {
  const at = new Map(program.flatMap((instruction, index) => (instruction.label ? [[instruction.label, index] as const] : [])));
  const offset = (from: number, label: string | undefined) => {
    if (label === undefined) return 0;
    const to = at.get(label);
    if (to === undefined || to <= from || to - from - 1 > 255) throw new Error(`seccomp: bad jump to ${label}`);
    return to - from - 1;
  };
  const out = Buffer.alloc(program.length * 8);
  program.forEach((instruction, index) => {
    out.writeUInt16LE(instruction.code, index * 8);
    out.writeUInt8(offset(index, instruction.jt), index * 8 + 2);
    out.writeUInt8(offset(index, instruction.jf), index * 8 + 3);
    out.writeUInt32LE(instruction.k >>> 0, index * 8 + 4);
  });
  return out;
}

/** The filter program for a host architecture, as the bytes of a struct sock_filter array. */
export function shareFilter(arch: HostArch): Buffer {
  const table: Partial<Record<SyscallName, number>> & { auditArch: number } = SYSCALLS[arch];
  const rules = POLICY.filter(([name]) => table[name] !== undefined);
  if (rules.length === 0) throw new Error('seccomp: empty policy');
  const program: Instruction[] = [
    load(4),
    // Another ABI (i386 on x86_64) has other numbers: nothing passes through it.
    { code: JEQ, k: table.auditArch, jt: 'native', jf: 'foreign' },
    ret(retErrno(EPERM), 'foreign'),
    { ...load(0), label: 'native' },
    // x32 system calls are the x86_64 ones with bit 30 set.
    ...(arch === 'x86_64' ? [{ code: JGE, k: 0x40000000, jt: 'x32', jf: 'rule0?' }, ret(retErrno(EPERM), 'x32')] : []),
    ...rules.map(([name], index): Instruction => ({
      code: JEQ,
      k: table[name]!,
      jt: `rule${index}`,
      jf: index + 1 < rules.length ? `rule${index + 1}?` : 'allow',
      label: `rule${index}?`,
    })),
    ...rules.flatMap(([, check], index) => checkCode(check, `rule${index}`)),
    ret(RET_ALLOW, 'allow'),
  ];
  return assemble(program);
}

export function hostArchForSandbox(nodeArch: string = process.arch): HostArch {
  if (nodeArch === 'x64') return 'x86_64';
  if (nodeArch === 'arm64') return 'aarch64';
  throw usageError(`boxbuild confines QEMU and its sharing daemons with seccomp on x86_64 and aarch64 hosts only (this one is ${nodeArch})`);
}
