#!/bin/sh
# A hostile build over sshfs: kills its own sshfs and speaks SFTP to the host's sftp-server on the
# target's virtio-serial port directly. Usage: build TARGET TOKEN. Prints "<request>: <reply>"
# lines: the reply's packet type (101 status, 102 handle, 105 attributes) and, for a status, its code.
target=$1 token=$2
port=
for dir in /sys/class/virtio-ports/*; do
  [ "$(cat "$dir/name")" = org.boxbuild.sftp.target ] && port=/dev/${dir##*/}
done
[ -n "$port" ] || { echo "no sftp port"; exit 1; }
# The target's sshfs only: the description's serves this very script.
sshfs=
for pid in $(pidof sshfs); do
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q " $target " && sshfs=$pid
done
umount -l "$target"
kill "$sshfs"
while kill -0 "$sshfs" 2>/dev/null; do sleep 0.1; done
exec 9<>"$port" || exit 1

be32() { printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"; }
string() { be32 ${#1}; printf %s "$1"; }
id=1000
# request NAME TYPE: sends the packet whose body (after type and id) is on stdin, prints the reply.
request() {
  cat >/tmp/body
  id=$((id + 1))
  { be32 $(($(wc -c </tmp/body) + 5)); printf "\\$(printf %03o "$2")"; be32 $id; cat /tmp/body; } >&9
  while :; do
    set -- "$1" $(timeout 10 dd bs=1 count=4 <&9 2>/dev/null | od -An -tu1)
    [ $# -eq 5 ] || { echo "$1: no reply"; return; }
    len=$(($2 << 24 | $3 << 16 | $4 << 8 | $5))
    set -- "$1" $(timeout 10 dd bs=1 count=$len <&9 2>/dev/null | od -An -tu1 -v)
    [ $(($3 << 24 | $4 << 16 | $5 << 8 | $6)) = $id ] || continue
    if [ "$2" = 101 ]; then echo "$1: 101 $(($7 << 24 | $8 << 16 | $9 << 8 | ${10}))"; else echo "$1: $2"; fi
    return
  done
}
no_attrs() { be32 0; }
{ string "/usr/local/boxbuild-$token"; no_attrs; } | request mkdir-usr-local 14
{ string "/etc/boxbuild-$token"; no_attrs; } | request mkdir-etc 14
{ string "/boxbuild-$token"; no_attrs; } | request mkdir-root 14
{ string /share/../../etc/hostname; be32 1; no_attrs; } | request open-etc-hostname 3
{ string /usr/bin/perl; } | request stat-usr-bin 17
{ string /proc/self/environ; be32 1; no_attrs; } | request open-proc 3
{ string /share/plain; be32 10; no_attrs; } | request create-plain 3 # WRITE | CREAT
{ string /share/plain; be32 4; be32 35309; } | request setstat-setuid 9 # permissions 0104755
{ string /share/plain; be32 2; be32 1234; be32 1234; } | request setstat-chown 9
{ string /etc; string /share/escape; } | request symlink-etc 20  # OpenSSH: target first
{ string /share/escape/hostname; be32 1; no_attrs; } | request open-through-symlink 3
echo RAW-SFTP-DONE
