import { existsSync } from 'node:fs';
import { homedir, totalmem } from 'node:os';
import { join } from 'node:path';
import { describeSkipped } from '../config/config.js';
import { distrust } from '../config/trust.js';
import { usageError } from '../errors.js';
import { formatBytes, parseMemoryMiB } from '../util/size.js';

/**
 * The user's registry files: ~/.config/boxbuild/boxes.json (unless someone else could have put it
 * there: a notice says so), $BOXBUILD_BOXES, then each --boxes (and the config files' registries).
 */
export function registryFiles(flags: { boxes?: string[]; quiet?: boolean }): string[] {
  const configHome = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  const user = join(configHome, 'boxbuild', 'boxes.json');
  const found = existsSync(user);
  const reason = found ? distrust(user) : undefined;
  if (reason) notice(flags.quiet)(describeSkipped({ file: user, kind: 'box registry', reason }));
  return [...(found && !reason ? [user] : []), ...(process.env.BOXBUILD_BOXES ? [process.env.BOXBUILD_BOXES] : []), ...(flags.boxes ?? [])];
}

export const notice = (quiet?: boolean) => (line: string) => {
  if (!quiet) process.stderr.write(`boxbuild: ${line}\n`);
};

/** Collects a repeatable option's values. */
export const collect = (value: string, list: string[] = []) => [...list, value];

/** --box-memory in MiB. More than the host has is refused at once: QEMU would only fail to boot, at the boot timeout. */
export function guestMemoryMiB(text: string): number {
  const mib = parseMemoryMiB(text);
  if (mib * 2 ** 20 > totalmem()) throw usageError(`--box-memory ${text} is more than this host's memory (${formatBytes(totalmem())})`);
  return mib;
}
