import { lstat, readFile, readlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, posix } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { type CpioEntry, writeCpio } from './cpio.js';
import { elfDependencies } from './elf.js';

/** Collects an initramfs: directories are created as needed, each path is written once. */
export class InitramfsBuilder {
  private readonly entries: CpioEntry[] = [];
  private readonly paths = new Set<string>();

  dir(path: string): this {
    const parts = path.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!this.paths.has(dir)) this.entries.push({ type: 'dir', path: dir });
      this.paths.add(dir);
    }
    return this;
  }

  file(path: string, data: Buffer, mode = 0o644): this {
    return this.add({ type: 'file', path, data, mode });
  }

  symlink(path: string, target: string): this {
    return this.add({ type: 'symlink', path, target });
  }

  build(): Buffer {
    return writeCpio(this.entries);
  }

  private add(entry: CpioEntry): this {
    const path = entry.path.replace(/^\/+/, '');
    if (this.paths.has(path)) return this;
    this.dir(posix.dirname(path));
    this.entries.push({ ...entry, path });
    this.paths.add(path);
    return this;
  }
}

/** Follows symlinks inside an unpacked package tree (absolute links point into the tree, too). */
async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  for (let hops = 0; hops < 16; hops++) {
    const stats = await lstat(join(root, path)).catch(() => undefined);
    if (!stats) return undefined;
    if (!stats.isSymbolicLink()) return path;
    const target = await readlink(join(root, path));
    path = isAbsolute(target) ? target : join(dirname(path), target);
  }
  return undefined;
}

/** Where Debian puts shared libraries (multiarch triplet directories first). */
const libraryDirs = (triplet: string) => [`/lib/${triplet}`, `/usr/lib/${triplet}`, '/lib', '/usr/lib'];

/**
 * Adds a dynamically linked program from an unpacked package tree with its loader and every
 * shared library it needs (read from the ELF files, recursively), at the paths Debian uses.
 */
export async function addDynamicProgram(builder: InitramfsBuilder, root: string, program: string, triplet: string): Promise<void> {
  const copy = async (path: string, mode: number) => {
    const real = await resolveInRoot(root, path);
    if (!real) throw new BoxbuildError('boxUnavailable', `${program} needs ${path}, which the unpacked packages do not hold`);
    const data = await readFile(join(root, real));
    builder.file(path, data, mode);
    return data;
  };
  const pending = [program];
  const seen = new Set<string>();
  while (pending.length > 0) {
    const path = pending.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const { interpreter, needed } = elfDependencies(await copy(path, 0o755));
    if (interpreter) pending.push(interpreter);
    for (const soname of needed) {
      const found = await Promise.all(libraryDirs(triplet).map(async (dir) => ((await resolveInRoot(root, `${dir}/${soname}`)) ? `${dir}/${soname}` : undefined)));
      const library = found.find(Boolean);
      if (!library) throw new BoxbuildError('boxUnavailable', `${program} needs ${soname}, which the unpacked packages do not hold`);
      pending.push(library);
    }
  }
}
