#!/bin/bash
# kiwi runs this inside the new root after all packages are installed.
set -e

# debootstrap leaves apt's package lists and caches in the root (about
# 80 MB); kiwi keeps its own under /var/cache/kiwi. Drop them so the
# tarball stays small and quick to compress.
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
