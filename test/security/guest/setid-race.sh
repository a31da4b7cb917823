#!/bin/sh
# A hostile build: races set-id file creation against hard links in the target (setid-race.c, built
# on the host and shared beside this script), as root in the guest, then with its creating threads
# as guest user 1000.
# Usage: build TARGET SECONDS.
target=$1 seconds=$2
race=$(dirname "$0")/setid-race
"$race" "$target/as-root" "$seconds" || exit 1
"$race" "$target/as-user" "$seconds" 1000 || exit 1
echo SETID-RACE-DONE
