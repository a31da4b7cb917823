import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { lastWords, runChild } from '../util/child.js';

/** A block of subordinate ids from /etc/subuid or /etc/subgid. */
export interface IdRange {
  start: number;
  count: number;
}

/**
 * How a share's daemon gets its private namespaces. Always inside a user namespace, root included:
 * "self" maps the user running boxbuild (root or not) to root in it and nothing else; "subids" also
 * maps the user's subordinate ids, for a daemon that must be able to call setgroups() (Debian 12's
 * C virtiofsd as a non-root user; as root, its supplementary groups are cleared instead).
 */
export type Namespacing = { kind: 'self' } | { kind: 'subids'; uids: IdRange; gids: IdRange };

/**
 * The `unshare` options for a namespacing: a user, mount and PID namespace whose processes all die
 * with unshare (--kill-child), with its own /proc.
 */
export function unshareOptions(namespacing: Namespacing): string[] {
  const user = ['--map-root-user'];
  if (namespacing.kind === 'subids') {
    const { uids, gids } = namespacing;
    user.push(`--map-users=${uids.start},1,${uids.count}`, `--map-groups=${gids.start},1,${gids.count}`);
  }
  return [...user, '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--mount-proc'];
}

/**
 * Runs in the new namespaces, with every path as a positional parameter (never inside the script).
 * Without a new root: bind-mounts the share over itself (read-only when asked), optionally hides
 * /run behind a tmpfs (Debian 12's virtiofsd writes its pid file under /var/run), and runs the
 * daemon. With a new root (sftp-server): builds a read-only root holding the share at /share, a
 * passwd file naming uid 0, /dev/null, and the system's program directories read-only; starts the
 * daemon chrooted there with its stdin on a FIFO; once it waits for input (its libraries loaded:
 * the kernel shows it sleeping in read, poll or select),
 * unmounts the program directories, so the daemon sees the share and nothing else of the host,
 * and only then passes it the guest's requests (this script's stdin).
 */
const CONFINE_SCRIPT = `set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
access=$1 share=$2 run=$3 newroot=$4
shift 4
if [ "$newroot" = - ]; then
  [ "$run" = private-run ] && mount -t tmpfs -o mode=0755 tmpfs /run
  mount --bind "$share" "$share"
  [ "$access" = ro ] && mount -o remount,bind,ro "$share"
  exec "$@"
fi
mount -t tmpfs -o mode=0755,size=64k,nosuid,nodev tmpfs "$newroot"
system=
for dir in usr bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$dir" ]; then ln -s "$(readlink "/$dir")" "$newroot/$dir"
  elif [ -d "/$dir" ]; then
    mkdir "$newroot/$dir"
    mount --bind "/$dir" "$newroot/$dir"
    mount -o remount,bind,ro,nosuid,nodev "$newroot/$dir"
    system="$system $dir"
  fi
done
mkdir "$newroot/share" "$newroot/dev" "$newroot/etc"
echo 'root:x:0:0:root:/share:/bin/sh' >"$newroot/etc/passwd"
echo 'root:x:0:' >"$newroot/etc/group"
touch "$newroot/dev/null"
mount --bind /dev/null "$newroot/dev/null"
mount --bind "$share" "$newroot/share"
[ "$access" = ro ] && mount -o remount,bind,ro "$newroot/share"
mount -o remount,bind,ro "$newroot"
requests=$newroot.requests
mkfifo -m 0600 "$requests"
exec 3<>"$requests"
cd "$newroot"
chroot . "$@" <&3 3<&- &
daemon=$!
exec 3<&-
tries=0
until case $(cat "/proc/$daemon/wchan" 2>/dev/null) in *pipe_read | *poll* | *select*) true ;; *) false ;; esac; do
  kill -0 "$daemon" 2>/dev/null || exit 1
  tries=$((tries + 1))
  [ "$tries" -lt 1000 ] || { echo "the daemon did not start waiting for requests" >&2; exit 1; }
  sleep 0.01
done
for dir in $system; do umount -l "$newroot/$dir"; done
exec cat >"$requests"
`;

export interface ConfineOptions {
  namespacing: Namespacing;
  share: string;
  readOnly: boolean;
  /** Put a private tmpfs on /run. */
  privateRun?: boolean;
  /**
   * An empty directory to build a minimal root in and chroot into (the share is at /share there);
   * the daemon then reads its requests from this command's stdin, once it is confined.
   */
  chrootIn?: string;
}

/**
 * argv that runs `command` confined as described. As root, supplementary groups are cleared first
 * (setpriv), so a daemon finds none to drop with setgroups(), which a user namespace forbids.
 */
export function confinedCommand(options: ConfineOptions, command: string[]): string[] {
  return [
    ...(process.getuid?.() === 0 ? ['setpriv', '--clear-groups', '--'] : []),
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

export async function subordinateRange(file: string, user: string, id: number): Promise<IdRange | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [owner, start, count] = line.trim().split(':');
    if ((owner === user || owner === String(id)) && Number(count) > 0) return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/** Chooses the namespacing for this user; `subids` is only returned when it is needed and works. */
export async function namespacingFor(needSetgroups: boolean): Promise<{ namespacing?: Namespacing; reason?: string }> {
  const { uid, gid, username } = userInfo();
  let namespacing: Namespacing = { kind: 'self' };
  if (needSetgroups && uid !== 0) {
    const uids = await subordinateRange('/etc/subuid', username, uid);
    const gids = await subordinateRange('/etc/subgid', username, gid);
    if (!uids || !gids) return { reason: `user ${username} has no subordinate ids in /etc/subuid and /etc/subgid` };
    namespacing = { kind: 'subids', uids, gids };
  }
  const probe = await runChild('unshare', [...unshareOptions(namespacing), '--', 'true']);
  if (probe.exitCode !== 0) return { reason: `cannot create a user namespace (${lastWords(probe)})` };
  return { namespacing };
}
