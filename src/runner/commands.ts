import { resolve } from 'node:path';
import type { BoxEntry } from '../box/registry.js';
import { usageError } from '../errors.js';
import type { Share } from '../sharing/types.js';
import { isWithin } from '../util/file.js';
import { type ShareSpec, existingDirectory, parseBuildArgs, realPath } from './args.js';
import { makeDirectories } from '../util/file.js';
import type { GuestCommand } from './options.js';

/** Where the build's directories appear in the guest. */
export const GUEST_DESCRIPTION = '/description';
export const GUEST_TARGET = '/target';

/** A build's host directories (both real paths; the target is created) and its other arguments. */
export interface BuildDirectories {
  description: string;
  targetDir: string;
  rest: string[];
}

/** Takes `--description D` and `--target-dir T` out of the build arguments and checks both directories. */
export function buildDirectories(buildArgs: string[]): BuildDirectories {
  const args = parseBuildArgs(buildArgs);
  if (args.description === undefined) throw usageError('missing --description DIR after "--"');
  if (args.targetDir === undefined) throw usageError('missing --target-dir DIR after "--"');
  const description = existingDirectory(args.description, '--description');
  // Real paths on both sides: a symlink must not lead the target into the description or around it.
  const separate = (target: string) => {
    if (isWithin(target, description)) throw usageError(`--target-dir ${args.targetDir} lies inside the description ${args.description}`);
    if (isWithin(description, target)) throw usageError(`--description ${args.description} lies inside the target directory ${args.targetDir}`);
    return target;
  };
  const target = separate(realPath(args.targetDir));
  try {
    makeDirectories(target);
  } catch (error) {
    throw usageError(`cannot create --target-dir ${args.targetDir}: ${(error as NodeJS.ErrnoException).code}`);
  }
  return { description, targetDir: separate(existingDirectory(target, '--target-dir')), rest: args.rest };
}

/**
 * The main command: the description is shared read-only, the target directory read-write, and the
 * box's build program gets the build arguments with both paths mapped to their guest paths; it runs
 * in the target directory.
 */
export function buildCommand(box: BoxEntry, buildArgs: string[]): GuestCommand {
  if (!box.buildProgram) throw usageError(`box "${box.name}" has no build program`);
  const { description, targetDir, rest } = buildDirectories(buildArgs);
  return {
    shares: [
      { tag: 'description', hostPath: description, guestPath: GUEST_DESCRIPTION, readOnly: true },
      { tag: 'target', hostPath: targetDir, guestPath: GUEST_TARGET, readOnly: false },
    ],
    targetDir,
    argv: [box.buildProgram, '--description', GUEST_DESCRIPTION, '--target-dir', GUEST_TARGET, ...rest],
    // The build's directory: where it writes, and where --debug-shell opens after a failure.
    cwd: GUEST_TARGET,
  };
}

/** `exec`: the user's shares, and the command run in the guest path of the current directory if shared. */
export function execCommand(shareSpecs: ShareSpec[], argv: string[], hostCwd: string): GuestCommand {
  const shares: Share[] = shareSpecs.map((spec, index) => ({ tag: `share${index}`, ...spec }));
  const guestPaths = new Set<string>();
  for (const share of shares) {
    if (guestPaths.has(share.guestPath)) throw usageError(`two shares use the guest path ${share.guestPath}`);
    guestPaths.add(share.guestPath);
  }
  // Share host paths are real paths: so must the directory be that is looked up among them.
  const realCwd = realPath(hostCwd);
  const containing = shares.find((share) => isWithin(realCwd, share.hostPath));
  const cwd = containing ? resolve(containing.guestPath, realCwd.slice(containing.hostPath.length).replace(/^\//, '')) : '/';
  return { shares, argv, cwd };
}
