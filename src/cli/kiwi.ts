import type { Command } from 'commander';
import type { BoxEntry } from '../box/registry.js';
import { usageError } from '../errors.js';
import type { KiwiRequest } from '../runner/kiwi.js';
import { parsePositiveInt } from '../util/size.js';
import { collect } from './common.js';

/** The options of kiwi's `system boxbuild` that only a KIWI box understands, and kiwi's global options. */
export interface KiwiFlags {
  listBoxes?: boolean;
  kiwiVersion?: string;
  sharedPath?: string;
  sshKey?: string;
  sshPort?: string;
  debug?: boolean;
  type?: string;
  profile?: string[];
  kiwiFile?: string;
  /** false: --no-cache. */
  cache?: boolean;
}

/** The KIWI-only options, by the flag that holds each. */
const KIWI_ONLY = {
  kiwiVersion: '--kiwi-version',
  sharedPath: '--shared-path',
  debug: '--debug',
  type: '--type',
  profile: '--profile',
  kiwiFile: '--kiwi-file',
} as const;

export function addKiwiOptions(command: Command): Command {
  return command
    .option('--list-boxes', 'list the boxes (same as "boxbuild box list")')
    .option('--kiwi-version <version>', 'KIWI boxes: install this kiwi version (pip) in the box before the build')
    .option('--shared-path <path>', 'KIWI boxes: share this host directory at the same path in the box')
    .option('--ssh-key <name>', 'accepted for kiwi compatibility; boxbuild\'s sshfs sharing needs no SSH key')
    .option('--ssh-port <port>', 'accepted for kiwi compatibility; boxbuild\'s sshfs sharing needs no SSH port')
    .option('--debug', 'kiwi global option, passed on to the box\'s kiwi')
    .option('--type <type>', 'kiwi global option: the image type to build')
    .option('--profile <name>', 'kiwi global option: a profile to build (may be repeated)', collect)
    .option('--kiwi-file <file>', 'kiwi global option: the kiwi file of the description')
    .option('--no-cache', 'KIWI boxes: download every package afresh, not through the box\'s package cache');
}

/** What a KIWI box runs, from the command line; also tells about options that change nothing here. */
export function kiwiRequest(flags: KiwiFlags, buildArgs: string[], notice: (line: string) => void): KiwiRequest {
  if (flags.sshPort !== undefined) parsePositiveInt(flags.sshPort, '--ssh-port');
  if (flags.sshKey !== undefined || flags.sshPort !== undefined) {
    notice('--ssh-key/--ssh-port change nothing here: boxbuild\'s sshfs sharing runs sftp-server over a virtio-serial port, with no SSH server, key or port');
  }
  return {
    buildArgs,
    globals: { debug: flags.debug, type: flags.type, profiles: flags.profile, kiwiFile: flags.kiwiFile },
    kiwiVersion: flags.kiwiVersion,
    sharedPath: flags.sharedPath,
  };
}

/** Refuses KIWI-only options for a box that runs boxbuild's own guest protocol. */
export function refuseKiwiOnly(flags: KiwiFlags, box: BoxEntry): void {
  const given: string[] = (Object.keys(KIWI_ONLY) as (keyof typeof KIWI_ONLY)[]).filter((key) => flags[key] !== undefined).map((key) => KIWI_ONLY[key]);
  if (flags.cache === false) given.push('--no-cache');
  if (given.length > 0) throw usageError(`${given.join(', ')}: only for KIWI boxes; box "${box.name}" is not one`);
}
