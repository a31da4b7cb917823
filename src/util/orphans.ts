import { findOnPath } from './path.js';

let setpriv: string | null | undefined;

/**
 * Prefixes argv with `setpriv --pdeathsig KILL` (util-linux) where it exists, so the kernel kills
 * the process if boxbuild itself dies without cleaning up (SIGKILL): no orphaned QEMU or daemon.
 */
export function diesWithParent(argv: string[]): string[] {
  setpriv ??= findOnPath('setpriv', ['/usr/bin', '/bin']) ?? null;
  return setpriv ? [setpriv, '--pdeathsig', 'KILL', '--', ...argv] : argv;
}
