import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { execa } from 'execa';

/** A block of subordinate ids from /etc/subuid or /etc/subgid. */
export interface IdRange {
  start: number;
  count: number;
}

/**
 * How a share's daemon gets a private mount namespace: as root directly; otherwise inside a user
 * namespace that maps the user to root ("self"), plus the user's subordinate ids when the daemon
 * must be able to call setgroups() (Debian 12's C virtiofsd).
 */
export type Namespacing = { kind: 'root' } | { kind: 'self' } | { kind: 'subids'; uids: IdRange; gids: IdRange };

/** The `unshare` options for a namespacing. */
export function unshareOptions(namespacing: Namespacing): string[] {
  const mount = ['--mount', '--propagation', 'private'];
  if (namespacing.kind === 'root') return mount;
  const user = ['--map-root-user'];
  if (namespacing.kind === 'subids') {
    const { uids, gids } = namespacing;
    user.push(`--map-users=${uids.start},1,${uids.count}`, `--map-groups=${gids.start},1,${gids.count}`);
  }
  return [...user, ...mount];
}

/**
 * Runs in the new namespaces: bind-mounts the share over itself (read-only when asked), optionally
 * hides /run behind a tmpfs (Debian 12's virtiofsd writes its pid file under /var/run), optionally
 * builds a minimal root that holds only the system's programs, /dev/null, a passwd file naming
 * uid 0 and the share (at /share) and chroots into it. Every path travels as a positional parameter, never inside the script.
 */
const CONFINE_SCRIPT = `set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
access=$1 share=$2 run=$3 newroot=$4
shift 4
[ "$run" = private-run ] && mount -t tmpfs -o mode=0755 tmpfs /run
if [ "$newroot" != - ]; then
  mount -t tmpfs -o mode=0755 tmpfs "$newroot"
  for dir in usr bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$dir" ]; then ln -s "$(readlink "/$dir")" "$newroot/$dir"
    elif [ -d "/$dir" ]; then mkdir "$newroot/$dir" && mount --rbind "/$dir" "$newroot/$dir"; fi
  done
  mkdir "$newroot/share" "$newroot/dev" "$newroot/etc"
  echo 'root:x:0:0:root:/share:/bin/sh' >"$newroot/etc/passwd"
  echo 'root:x:0:' >"$newroot/etc/group"
  touch "$newroot/dev/null"
  mount --bind /dev/null "$newroot/dev/null"
  mount --bind "$share" "$newroot/share"
  share=$newroot/share
else
  mount --bind "$share" "$share"
fi
[ "$access" = ro ] && mount -o remount,bind,ro "$share"
if [ "$newroot" != - ]; then cd "$newroot" && exec chroot . "$@"; fi
exec "$@"
`;

export interface ConfineOptions {
  namespacing: Namespacing;
  share: string;
  readOnly: boolean;
  /** Put a private tmpfs on /run. */
  privateRun?: boolean;
  /** An empty directory to build a minimal root in and chroot into (the share is at /share there). */
  chrootIn?: string;
}

/** argv (starting with `unshare`) that runs `command` confined as described. */
export function confinedCommand(options: ConfineOptions, command: string[]): string[] {
  return [
    'unshare',
    ...unshareOptions(options.namespacing),
    '--',
    '/bin/sh',
    '-c',
    CONFINE_SCRIPT,
    'boxbuild-confine',
    options.readOnly ? 'ro' : 'rw',
    options.share,
    options.privateRun ? 'private-run' : '-',
    options.chrootIn ?? '-',
    ...command,
  ];
}

async function subordinateRange(file: string, user: string, id: number): Promise<IdRange | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [owner, start, count] = line.trim().split(':');
    if ((owner === user || owner === String(id)) && Number(count) > 0) return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/** Chooses the namespacing for this user; `subids` is only returned when it was asked for and works. */
export async function namespacingFor(needSetgroups: boolean): Promise<{ namespacing?: Namespacing; reason?: string }> {
  const { uid, gid, username } = userInfo();
  if (uid === 0) return { namespacing: { kind: 'root' } };
  let namespacing: Namespacing = { kind: 'self' };
  if (needSetgroups) {
    const uids = await subordinateRange('/etc/subuid', username, uid);
    const gids = await subordinateRange('/etc/subgid', username, gid);
    if (!uids || !gids) return { reason: `user ${username} has no subordinate ids in /etc/subuid and /etc/subgid` };
    namespacing = { kind: 'subids', uids, gids };
  }
  const probe = await execa('unshare', [...unshareOptions(namespacing), '--', 'true'], { reject: false, stdin: 'ignore' });
  if (probe.exitCode !== 0) {
    const said = String(probe.stderr).trim().split('\n').pop() || probe.shortMessage;
    return { reason: `cannot create a user namespace (${said})` };
  }
  return { namespacing };
}
