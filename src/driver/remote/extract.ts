import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ProtocolError, type TargetEntry, checkRelativePath } from './protocol.js';

/*
 * Writes the target directory the build host sends back into the local one. The host is hostile
 * input: paths are relative without "..", only directories, files and symlinks are made (no hard
 * links, devices, fifos), set-id and sticky bits are dropped, and nothing is written through a
 * symlink, neither one the host sent nor one already in the target: every directory on the way is
 * looked at (lstat) before it is entered.
 */

const lstatOrNot = (path: string) => lstat(path).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : Promise.reject(error)));

export class TargetWriter {
  /** Directories whose mode is set at the end (one without write permission would refuse its files). */
  private readonly dirModes: Array<[string, number]> = [];
  /** Files written and their bytes. */
  files = 0;
  bytes = 0;

  /** `root`: the local target directory (a real path). */
  constructor(private readonly root: string) {}

  /** Makes the directories of `parts` below the root that are missing; refuses one that is a symlink or no directory. */
  private async enter(parts: string[]): Promise<string> {
    let dir = this.root;
    for (const part of parts) {
      dir = join(dir, part);
      const info = await lstatOrNot(dir);
      if (!info) await mkdir(dir, { mode: 0o755 });
      else if (!info.isDirectory()) throw new ProtocolError(`${parts.join('/')}: ${info.isSymbolicLink() ? 'a symlink' : 'no directory'} is on its way in the target directory`);
    }
    return dir;
  }

  /** Removes what is at `path` so that a file or symlink takes its place; a directory there is refused. */
  private async clear(path: string, entryPath: string): Promise<void> {
    const info = await lstatOrNot(path);
    if (info?.isDirectory()) throw new ProtocolError(`${entryPath}: a directory is in its place in the target directory`);
    if (info) await unlink(path);
  }

  /** Writes one entry; a file's bytes come from `data`. */
  async write(entry: TargetEntry, data: AsyncIterable<Buffer>): Promise<void> {
    const parts = checkRelativePath(entry?.path).split('/');
    if (!Number.isInteger(entry.mode)) throw new ProtocolError(`${entry.path}: bad mode`);
    const mode = entry.mode & 0o777;
    const dir = await this.enter(parts.slice(0, -1));
    const path = join(dir, parts.at(-1)!);
    if (entry.type === 'dir') {
      await this.enter(parts);
      this.dirModes.push([path, mode]);
    } else if (entry.type === 'symlink') {
      if (typeof entry.target !== 'string' || entry.target === '' || entry.target.includes('\0')) throw new ProtocolError(`${entry.path}: bad symlink`);
      await this.clear(path, entry.path);
      await symlink(entry.target, path);
    } else if (entry.type === 'file') {
      await this.clear(path, entry.path);
      // O_EXCL: made here, never opened through a link that appeared meanwhile.
      const file = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        for await (const chunk of data) {
          await file.write(chunk);
          this.bytes += chunk.length;
        }
        await file.chmod(mode);
      } finally {
        await file.close();
      }
      this.files++;
    } else {
      throw new ProtocolError(`${entry.path}: type ${JSON.stringify(entry.type)} is not taken (only directories, files and symlinks)`);
    }
  }

  /** Gives the directories their modes, deepest first. */
  async finish(): Promise<void> {
    for (const [path, mode] of this.dirModes.reverse()) await chmod(path, mode);
  }
}
