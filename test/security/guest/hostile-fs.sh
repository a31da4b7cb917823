#!/bin/sh
# A hostile build: attacks the host through its shares with the guest kernel's own file system
# calls, as root in the guest. Usage: build TARGET. Prints what each attempt got; the host side
# checks what actually happened.
target=$1
try() { if "$@" 2>/dev/null; then echo "allowed: $*"; else echo "refused: $*"; fi; }
# 9p: attach to the target's channel again with attach names that point above the share.
if grep -q " $target 9p " /proc/mounts; then
  for aname in /.. ../.. /etc; do
    umount "$target" && mount -t 9p -o "trans=virtio,version=9p2000.L,aname=$aname" target "$target" &&
      echo "attached with aname=$aname" >"$target/aname-probe" || echo "cannot reattach: $aname"
  done
fi
cd "$target" || exit 1
echo data >plain
try chmod 4755 plain
try chmod 2755 plain
try chown 1234:1234 plain
try chown 0:1234 plain
cp /bin/busybox suid-copy && try chmod 6755 suid-copy
try mkdir -m 2775 setgid-dir
try mknod block b 7 0
try mknod char c 1 3
try mkfifo fifo
echo 'intruder:x:1234:1234::/:/bin/sh' >>/etc/passwd
try su intruder -s /bin/sh -c "echo x >$target/by-intruder"
try ln -s /etc/shadow host-shadow
try ln -s ../../../../../../../../etc/shadow host-shadow-relative
# The description is read-only, and nothing above it is reachable.
try touch /description/planted
try rm -f /description/build
try ls /description/../../../etc/shadow
# Provenance: boxbuild writes boxbuild-provenance.json into the target after the build; links
# planted under that name and under the temporary name it used to write first must not be followed.
victim=$(cat /description/victim-path)
try ln -s "$victim" boxbuild-provenance.json
pid=$(cat "$target/cli-pid" 2>/dev/null)
[ -n "$pid" ] && try ln -s "$victim" "boxbuild-provenance.json.$pid.tmp"
echo HOSTILE-DONE
