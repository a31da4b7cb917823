import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Arch, isArch } from './arch.js';
import { isObject, readJsonFile, writeJsonFile } from './json-file.js';
import { PRIVATE_DIR } from './modes.js';
import { type SourceRole, isSha256 } from './sources.js';

/** One file of an installed box, recorded when it was installed (never re-hashed on a normal run). */
export interface ManifestFile {
  /** File name inside the version directory. */
  name: string;
  sha256: string;
  size: number;
}

/** The files of an installed box version, by what they are. */
export interface BoxFiles {
  kernel: ManifestFile;
  initrd: ManifestFile;
  /** The system disk (qcow2). */
  system?: ManifestFile;
  /** The package list the box was published with. */
  packages?: ManifestFile;
}

export type FileRole = keyof BoxFiles;

/** A file a remote box version was downloaded from. */
export interface DownloadRecord {
  url: string;
  sha256: string;
  size: number;
  /** The server's Last-Modified, when it sent one. */
  lastModified?: string;
  /** The files it became (a kernel tarball becomes the kernel and the initrd). */
  files: FileRole[];
}

/** A small file whose change means the remote box changed, with the validators it was served with. */
export interface ProbeRecord {
  url: string;
  sha256: string;
  etag?: string;
  lastModified?: string;
}

/** Where a box pulled from an OCI registry came from. */
export interface OciRecord {
  /** The reference it was pulled by (registry/repository:tag or @digest). */
  reference: string;
  /** The digest of what the reference named then (an index, or the manifest itself). */
  digest: string;
  /** The digest of the architecture's manifest. */
  manifest: string;
  /** The system disk's parts, in order (a later pull takes the unchanged ones from this version's disk). */
  parts?: { digest: string; size: number }[];
}

/** `box.json` inside every installed box version. */
export interface BoxManifest {
  name: string;
  arch: Arch;
  /** Human-readable version (e.g. the Debian kernel package version, or a remote box's publication date). */
  version: string;
  files: BoxFiles;
  /** Where the box came from: package versions, URLs. */
  sources: Record<string, string>;
  /** Remote boxes: what each file was downloaded from. */
  downloads?: Partial<Record<SourceRole, DownloadRecord>>;
  /** Remote boxes: what the update check asks about (none when every file is pinned in the registry). */
  probes?: ProbeRecord[];
  /** Boxes pulled from an OCI registry. */
  oci?: OciRecord;
}

/** An installed box version: its directory and manifest. */
export interface InstalledBox {
  dir: string;
  manifest: BoxManifest;
}

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BOXBUILD_CACHE_DIR) return env.BOXBUILD_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'boxbuild');
}

/**
 * The cache at `root`, private to the user: made so when missing, and closed off again when it is
 * open to others (made by an older boxbuild, or under a loose umask), which closes off all in it.
 * A cache of another user's stays as its owner made it.
 */
export function openCache(root: string): string {
  mkdirSync(root, { recursive: true, mode: PRIVATE_DIR });
  try {
    chmodSync(root, PRIVATE_DIR);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
  }
  return root;
}

/** `<cache>/boxes/<name>/<arch>`: one directory per content version, plus a `current` symlink. */
export function boxArchDir(root: string, name: string, arch: Arch): string {
  return join(root, 'boxes', name, arch);
}

/** The lock that serialises making, downloading, updating and removing one box variant. */
export function boxLockPath(root: string, name: string, arch: Arch): string {
  return join(root, 'locks', `${name}-${arch}.lock`);
}

/** `<cache>/tmp/<name>/<arch>`: partial downloads and staging directories of one box variant. */
export function boxTmpDir(root: string, name: string, arch: Arch): string {
  return join(root, 'tmp', name, arch);
}

/** Prefixes of the work directories of makes and downloads in a variant's tmp directory. */
const WORK_PREFIXES = ['make-', 'staging-'];

/**
 * A fresh work directory for making or downloading a variant, in its tmp directory. Call it under
 * the variant's lock: work directories that are there already were left by a holder that died
 * (e.g. by a second Ctrl-C), and are removed first. Partial downloads stay for a resume.
 */
export async function freshWorkDir(root: string, name: string, arch: Arch, prefix: 'make-' | 'staging-'): Promise<string> {
  const tmp = boxTmpDir(root, name, arch);
  await mkdir(tmp, { recursive: true, mode: PRIVATE_DIR });
  const leftovers = (await readdir(tmp)).filter((entry) => WORK_PREFIXES.some((start) => entry.startsWith(start)));
  await Promise.all(leftovers.map((entry) => rm(join(tmp, entry), { recursive: true, force: true })));
  return mkdtemp(join(tmp, prefix));
}

/** Content id of a manifest: changes whenever any file changes. */
export function manifestId(manifest: BoxManifest): string {
  const fileDigests = Object.entries(manifest.files)
    .map(([role, file]) => `${role}:${file.name}:${file.sha256}`)
    .sort()
    .join('\n');
  return createHash('sha256').update(fileDigests).digest('hex').slice(0, 16);
}

const isManifestFile = (value: unknown): value is ManifestFile =>
  isObject(value) && typeof value.name === 'string' && typeof value.sha256 === 'string' && isSha256(value.sha256) && Number.isInteger(value.size);

/** Whether a parsed box.json has the fields boxbuild relies on. */
export function isManifest(value: unknown): value is BoxManifest {
  if (!isObject(value) || typeof value.name !== 'string' || typeof value.arch !== 'string' || !isArch(value.arch) || typeof value.version !== 'string') return false;
  const { files, sources, downloads, probes } = value;
  if (!isObject(files) || !isManifestFile(files.kernel) || !isManifestFile(files.initrd)) return false;
  if ([files.system, files.packages].some((file) => file !== undefined && !isManifestFile(file))) return false;
  if (!isObject(sources) || !Object.values(sources).every((source) => typeof source === 'string')) return false;
  const { oci } = value;
  const isOci = isObject(oci) && typeof oci.reference === 'string' && typeof oci.digest === 'string' && typeof oci.manifest === 'string' && (oci.parts === undefined || Array.isArray(oci.parts));
  return (downloads === undefined || isObject(downloads)) && (probes === undefined || Array.isArray(probes)) && (oci === undefined || isOci);
}

const manifestPath = (dir: string) => join(dir, 'box.json');

export const readManifest = (dir: string) => readJsonFile(manifestPath(dir), isManifest);

/** The directory the variant's `current` link names, whether or not a box is whole there. */
async function currentDir(root: string, name: string, arch: Arch): Promise<string | undefined> {
  const base = boxArchDir(root, name, arch);
  const target = await readlink(join(base, 'current')).catch(() => undefined);
  return target === undefined ? undefined : join(base, target);
}

/** The current version of a variant; undefined when there is none or its box.json is missing or invalid. */
export async function readInstalled(root: string, name: string, arch: Arch): Promise<InstalledBox | undefined> {
  const dir = await currentDir(root, name, arch);
  const manifest = dir && (await readManifest(dir));
  return manifest ? { dir: dir!, manifest } : undefined;
}

/** What is wrong with a variant whose `current` version cannot be read (undefined when nothing is cached or it is fine). */
export async function brokenInstall(root: string, name: string, arch: Arch): Promise<string | undefined> {
  const dir = await currentDir(root, name, arch);
  if (!dir || (await readManifest(dir))) return undefined;
  return `its manifest ${manifestPath(dir)} is missing or invalid`;
}

/** The files of an installed version that are not there, by name: a stat each, no hashing (that is `box verify`'s). */
export async function missingFiles(installed: InstalledBox): Promise<string[]> {
  const files = Object.values(installed.manifest.files) as ManifestFile[];
  const present = await Promise.all(files.map((file) => stat(join(installed.dir, file.name)).then((info) => info.isFile(), () => false)));
  return files.filter((_, index) => !present[index]).map((file) => file.name);
}

/** Removes the current version of a variant, whole or damaged, so that it is made or downloaded afresh. Call it under the variant's lock. */
export async function dropCurrentVersion(root: string, name: string, arch: Arch): Promise<void> {
  const dir = await currentDir(root, name, arch);
  await rm(join(boxArchDir(root, name, arch), 'current'), { force: true });
  if (dir) await rm(dir, { recursive: true, force: true });
}

/**
 * Writes the manifest into a fully written and verified staging directory, moves it into place
 * as a new version and switches `current` to it atomically (symlink + rename). The previous
 * version stays until pruned. A directory of the same content without a valid manifest (a
 * damaged install) is replaced, so that the cache repairs itself.
 */
export async function installVersion(root: string, staging: string, manifest: BoxManifest): Promise<InstalledBox> {
  await writeJsonFile(manifestPath(staging), manifest);
  const base = boxArchDir(root, manifest.name, manifest.arch);
  await mkdir(base, { recursive: true, mode: PRIVATE_DIR });
  const id = manifestId(manifest);
  const dir = join(base, id);
  try {
    await rename(staging, dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    if (await readManifest(dir)) {
      // The same content is installed already; the new manifest says where it came from now.
      await writeJsonFile(manifestPath(dir), manifest);
      await rm(staging, { recursive: true, force: true });
    } else {
      const damaged = `${dir}.damaged-${process.pid}`;
      await rename(dir, damaged);
      await rename(staging, dir);
      await rm(damaged, { recursive: true, force: true });
    }
  }
  const link = join(base, `.current-${process.pid}`);
  await rm(link, { force: true });
  await symlink(id, link);
  await rename(link, join(base, 'current'));
  return { dir, manifest };
}
