import type { Command } from 'commander';
import { UNUSED_DAYS } from '../package-cache/store.js';
import type { BoxFlags } from './box-actions.js';
import { collect } from './common.js';

/** The actions, loaded when a `box` command runs. */
const actions = () => import('./box-actions.js');

/** Adds `boxbuild box ...`: list, fetch, make, import, update, verify, remove, push, prune. */
export function addBoxCommands(program: Command, signal?: AbortSignal): void {
  const box = program.command('box').description('Manage boxes').exitOverride();
  const command = (usage: string, description: string) =>
    box
      .command(usage)
      .description(description)
      .option('--boxes <file>', 'an extra box registry file (may be repeated)', collect)
      .option('-q, --quiet', 'print no notices')
      .exitOverride();

  command('list', 'List the boxes: architectures, cached version, size, and whether a newer version is published')
    .option('--json', 'print JSON')
    .option('--names', 'print only the names of the boxes the registries know, one a line (for shell completion)')
    .option('--no-update-check', "don't ask the servers whether cached boxes are current")
    .action(async (flags: BoxFlags) => (await actions()).listBoxes(flags));

  const single = (usage: string, description: string, act: 'fetch' | 'make') =>
    command(usage, description)
      .option('--arch <arch>', "architecture (default: the host's)")
      .action(async (name: string, flags: BoxFlags) => (await actions()).singleBox(name, flags, act, signal));
  single('fetch <name>', 'Make sure a box is in the cache and current (downloaded or made when needed); prints its directory', 'fetch').option(
    '--no-update-check',
    'use a cached box as it is',
  );
  single('make <name>', 'Make a locally made box (debian, debian-system, debian-kiwi) from distribution packages, again', 'make')
    .option('--package <name>', 'an extra Debian package for a system box (may be repeated)', collect)
    .option('--disk-size <size>', 'size of a system box\'s root file system: 8G, 20G (default 8G)');

  command('import <name> <source>', 'Make box NAME of an image: a disk image (qcow2, raw) or Vagrant box (libvirt), a root file system (directory or tarball), an OCI or Docker image (layout directory, archive, or a docker:// oci: ... reference pulled with skopeo); prints its directory')
    .option('--arch <arch>', 'the architecture, when the image does not tell (or to pick one of a multi-architecture image)')
    .option('--disk-size <size>', "size of a root file system's disk: 8G, 20G (default 8G, or what it needs)")
    .option('--memory <size>', "the box's memory (default 1G)")
    .option('--kernel <file>', 'a disk image without a kernel in /boot: the kernel to boot it with (with --initrd)')
    .option('--initrd <file>', 'the initrd of --kernel, which mounts the image\'s root by UUID')
    .action(async (name: string, source: string, flags: BoxFlags) => (await actions()).importCommand(name, source, flags, signal));

  command('update [name]', 'Download the new version of a cached box (or of every one with --all) when there is one')
    .option('--arch <arch>', 'only this architecture')
    .option('--all', 'every cached box')
    .action(async (name: string | undefined, flags: BoxFlags) => (await actions()).updateBoxes(name, flags));

  command('verify [name]', 'Check the files of cached boxes (all, or one box) against the checksums recorded when they were installed')
    .option('--arch <arch>', 'only this architecture')
    .option('--repair', 'make or download a damaged box afresh')
    .option('--json', 'print JSON')
    .action(async (name: string | undefined, flags: BoxFlags) => (await actions()).verifyBoxes(name, flags, signal));

  command('remove <name>', 'Remove a box from the cache')
    .option('--arch <arch>', 'only this architecture')
    .action(async (name: string, flags: BoxFlags) => (await actions()).removeCommand(name, flags, signal));

  command('push <name> <reference>', 'Publish a cached box (NAME, or NAME:ARCH) to an OCI registry as REGISTRY/REPOSITORY:TAG; prints the reference with its digest')
    .option('--sign <key>', 'sign each architecture\'s manifest with this gpg key (registry entries that pin its public key then require it)')
    .option('--part-size <size>', 'the size of the system disk\'s parts: a cut pull resumes part by part, an update fetches only the parts that changed (default 64M)')
    .action(async (spec: string, reference: string, flags: BoxFlags) => (await actions()).pushBoxes(spec, reference, flags, signal));

  command('prune', `Delete superseded box versions, partial downloads, package files unused for ${UNUSED_DAYS} days and other leftovers from the cache, and the run directories of killed runs`)
    .option('--packages', 'empty the package caches (kiwi builds download their packages again)')
    .option('--dry-run', 'remove nothing: list what would be removed and the space it takes')
    .action(async (flags: BoxFlags) => (await actions()).pruneCommand(flags));
}
