import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, constants, lstat, mkdir, open, readFile, readdir, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { usageError } from '../../errors.js';
import { CHUNK, type ManifestEntry, ProtocolError, checkRelativePath } from './protocol.js';

/*
 * The description travels as a manifest and the contents the build host lacks: the host keeps
 * every file content it was sent as a blob named by its sha256 (`<cache>/remote/blobs`), so a
 * second run sends only what changed. Each run gets a directory of its own made from the blobs:
 * builds at once never share one. Symlinks travel as symlinks, never followed on either side.
 */

const SHA256 = /^[0-9a-f]{64}$/;

/** How many files are hashed or copied at once: a description is often many small files. */
const AT_ONCE = 16;

/** Runs `task` on every item, AT_ONCE at a time. */
async function eachAtOnce<T>(items: T[], task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, items.length) }, worker));
}

/** A file's sha256; a small file read at once (a stream per file costs more than the hashing). */
async function sha256(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  if (size <= CHUNK) hash.update(await readFile(file));
  else for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The description's entries, parents before children; sockets, fifos and devices are refused. */
export async function listDescription(root: string): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [];
  const walk = async (dir: string, prefix: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const path = prefix ? `${prefix}/${name}` : name;
      const full = join(dir, name);
      const info = await lstat(full);
      const mode = info.mode & 0o777;
      if (info.isDirectory()) {
        entries.push({ path, type: 'dir', mode });
        await walk(full, path);
      } else if (info.isFile()) entries.push({ path, type: 'file', mode, size: info.size }); // hashed below
      else if (info.isSymbolicLink()) entries.push({ path, type: 'symlink', mode, target: await readlink(full) });
      else throw usageError(`--description: ${full} is neither a file, a directory nor a symlink: it cannot be sent to the build host`);
    }
  };
  await walk(root, '');
  await eachAtOnce(
    entries.filter((entry) => entry.type === 'file'),
    async (entry) => void (entry.sha256 = await sha256(join(root, entry.path), entry.size!)),
  );
  return entries;
}

/** The file contents of a manifest, each once: sha256 → a file that has it. */
export function blobSources(root: string, manifest: ManifestEntry[]): Map<string, { file: string; size: number }> {
  const sources = new Map<string, { file: string; size: number }>();
  for (const entry of manifest) if (entry.type === 'file') sources.set(entry.sha256!, { file: join(root, entry.path), size: entry.size! });
  return sources;
}

/**
 * Checks a manifest from the other side: safe paths, each once, every parent a directory listed
 * before it (so that nothing is made through a symlink), files with a sha256, symlinks with a target.
 */
export function checkManifest(manifest: unknown): ManifestEntry[] {
  if (!Array.isArray(manifest)) throw new ProtocolError('the manifest is not a list');
  const dirs = new Set<string>();
  const seen = new Set<string>();
  for (const entry of manifest as ManifestEntry[]) {
    const path = checkRelativePath(entry?.path);
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : undefined;
    if (seen.has(path)) throw new ProtocolError(`${path} is listed twice`);
    if (parent !== undefined && !dirs.has(parent)) throw new ProtocolError(`${path} comes before its directory`);
    if (!Number.isInteger(entry.mode) || entry.mode < 0 || entry.mode > 0o777) throw new ProtocolError(`${path}: bad mode`);
    if (entry.type === 'dir') dirs.add(path);
    else if (entry.type === 'file') {
      if (!SHA256.test(String(entry.sha256)) || !Number.isSafeInteger(entry.size) || entry.size! < 0) throw new ProtocolError(`${path}: bad sha256 or size`);
    } else if (entry.type !== 'symlink' || typeof entry.target !== 'string' || entry.target === '' || entry.target.includes('\0')) {
      throw new ProtocolError(`${path}: bad type`);
    }
    seen.add(path);
  }
  return manifest as ManifestEntry[];
}

/** The blobs the build host keeps: `<cache>/remote/blobs/<sha256>`, private to its user. */
export class BlobStore {
  constructor(readonly dir: string) {}

  async open(): Promise<this> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    return this;
  }

  private path(hash: string): string {
    if (!SHA256.test(hash)) throw new ProtocolError(`bad sha256 ${JSON.stringify(hash)}`);
    return join(this.dir, hash);
  }

  /** The hashes of `manifest` that have no blob yet. */
  async missing(manifest: ManifestEntry[]): Promise<string[]> {
    const hashes = [...new Set(manifest.flatMap((entry) => (entry.type === 'file' ? [entry.sha256!] : [])))];
    const present = await Promise.all(hashes.map((hash) => stat(this.path(hash)).then((info) => info.isFile(), () => false)));
    return hashes.filter((_, index) => !present[index]);
  }

  /** Takes one blob's bytes: kept (renamed into place) only when they have the hash they were sent for. */
  async receive(hash: string, chunks: AsyncIterable<Buffer>): Promise<void> {
    const final = this.path(hash);
    const temp = join(this.dir, `.${hash}.${randomBytes(6).toString('hex')}`);
    const file = await open(temp, 'wx', 0o600);
    const digest = createHash('sha256');
    try {
      for await (const chunk of chunks) {
        digest.update(chunk);
        await file.write(chunk);
      }
      await file.close();
      if (digest.digest('hex') !== hash) throw new ProtocolError(`the content sent for ${hash} has another sha256`);
      await rename(temp, final);
    } catch (error) {
      await file.close().catch(() => {});
      await rm(temp, { force: true });
      throw error;
    }
  }

  /** Makes the description in `root` (an empty directory) from the blobs of a checked manifest; nothing is written through a symlink. */
  async materialise(manifest: ManifestEntry[], root: string): Promise<void> {
    // The directories first, parents before children; then what is in them, several at once.
    for (const entry of manifest.filter((entry) => entry.type === 'dir')) await mkdir(join(root, entry.path), { mode: 0o700 });
    await eachAtOnce(manifest, async (entry) => {
      const path = join(root, entry.path);
      if (entry.type === 'symlink') return symlink(entry.target!, path);
      if (entry.type === 'file') await copyFile(this.path(entry.sha256!), path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      // A directory stays the host user's to write in: its run directory is removed afterwards.
      await chmod(path, entry.type === 'dir' ? entry.mode | 0o700 : entry.mode);
    });
  }
}
