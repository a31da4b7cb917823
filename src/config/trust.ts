import { type Stats, realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/*
 * Files boxbuild finds by itself (config files, the user's registry, a registry a config file names)
 * steer a run: they name kernels to boot. As git decides for safe.directory, such a file is read only
 * when no one but the user running boxbuild, or root, can have put it there or changed it.
 */

const S_ISVTX = 0o1000;

/** Why `stats` (of `subject`) lets someone else than `uid` and root change it; undefined when nothing does. */
function looseness(stats: Stats, subject: string, uid: number): string | undefined {
  if (stats.uid !== uid && stats.uid !== 0) return `${subject} owned by uid ${stats.uid}, not by you or root`;
  // A sticky directory (as /tmp) lets no one replace or remove another's file: only the file's owner counts.
  if (stats.isDirectory() && stats.mode & S_ISVTX) return undefined;
  if (stats.mode & 0o002) return `${subject} writable by everyone`;
  if (stats.mode & 0o020) return `${subject} writable by its group (gid ${stats.gid})`;
  return undefined;
}

/**
 * Why `file` must not be read, or undefined when it may: the file (links followed) and the directory
 * holding it (also the real one of a link) must belong to `uid` or root and be writable by no one
 * else; a sticky directory may be writable by everyone. A file that does not exist is judged by its
 * directory alone (someone could create it there); one in no directory that exists is no one's.
 */
export function distrust(file: string, uid = process.geteuid!()): string | undefined {
  try {
    const real = realpathOrNothing(file);
    const dir = realpathOrNothing(dirname(file));
    if (!dir) return undefined;
    const dirs = [...new Set([dir, ...(real ? [dirname(real)] : [])])];
    const reasons = [...(real ? [looseness(statSync(real), 'it is', uid)] : []), ...dirs.map((d) => looseness(statSync(d), `its directory ${d} is`, uid))];
    return reasons.find(Boolean);
  } catch (error) {
    return `it cannot be checked (${(error as NodeJS.ErrnoException).code ?? error})`;
  }
}

function realpathOrNothing(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
