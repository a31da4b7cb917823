import { type HostArch, hostArchForSandbox, shareFilter } from './seccomp.js';

/** prctl's system call number per host architecture. */
const PRCTL: Record<HostArch, number> = { x86_64: 157, aarch64: 167 };

/**
 * Loads a seccomp filter and executes the command under it: no_new_privs, then
 * prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &{len, filter}). Perl is on every Debian system
 * (perl-base is essential) and can make system calls without a compiler or a native module.
 */
const LOADER = `use strict;
my ($filter, $prctl) = splice(@ARGV, 0, 2);
my $program = pack('H*', $filter);
syscall($prctl + 0, 38, 1, 0, 0, 0) == 0 or die "boxbuild-sandbox: PR_SET_NO_NEW_PRIVS failed: $!\\n";
syscall($prctl + 0, 22, 2, pack('S x6 p', length($program) / 8, $program), 0, 0) == 0
  or die "boxbuild-sandbox: loading the seccomp filter failed: $!\\n";
exec { $ARGV[0] } @ARGV or die "boxbuild-sandbox: cannot run $ARGV[0]: $!\\n";
`;

let filterHex: string | undefined;

/**
 * argv that runs `argv` under the share filter (src/sandbox/seccomp.ts): whatever a guest asks of
 * the process, it creates no setuid/setgid file, device node, FIFO or socket, changes no owner to
 * another user and sets no extended attribute. Put it innermost, right before the program itself:
 * no_new_privs stops setuid helpers such as newuidmap.
 */
export function underShareFilter(argv: string[]): string[] {
  const arch = hostArchForSandbox();
  filterHex ??= shareFilter(arch).toString('hex');
  return ['perl', '-e', LOADER, filterHex, String(PRCTL[arch]), ...argv];
}
