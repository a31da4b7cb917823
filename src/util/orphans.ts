import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

let setpriv: string | null | undefined;

function findSetpriv(): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/bin']) {
    try {
      accessSync(join(dir, 'setpriv'), constants.X_OK);
      return join(dir, 'setpriv');
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Prefixes argv with `setpriv --pdeathsig KILL` (util-linux) where it exists, so the kernel kills
 * the process if boxbuild itself dies without cleaning up (SIGKILL): no orphaned QEMU or daemon.
 */
export function diesWithParent(argv: string[]): string[] {
  setpriv ??= findSetpriv();
  return setpriv ? [setpriv, '--pdeathsig', 'KILL', '--', ...argv] : argv;
}
