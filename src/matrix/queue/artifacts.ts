import { lstat, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { hashFile } from '../../box/hash.js';
import type { BuildResult } from '../types.js';

/*
 * A queued run's artifacts, on a filesystem every worker and the matrix host reach:
 *   <root>/<run id>/<build id>/                     log.txt, result.json, target/, build.json, manifest.json
 *   <root>/<run id>/<build id>.attempt-<n>.<worker>/ an attempt under way
 * An attempt becomes the build's directory by one rename once it is whole, and only if no other
 * attempt got there first: a build that was retried (its worker died, or lost its lock) has its
 * artifacts once, never half.
 */

export const MANIFEST = 'manifest.json';
/** The BuildResult of the attempt that was published, its log path relative to the directory. */
export const BUILD_RESULT = 'build.json';

export interface ManifestEntry {
  /** Relative to the build's directory. */
  path: string;
  size: number;
  sha256: string;
}

export const buildDir = (root: string, runId: string, buildId: string) => join(root, runId, buildId);

export const attemptDir = (root: string, runId: string, buildId: string, attempt: number, worker: string) => join(root, runId, `${buildId}.attempt-${attempt}.${worker}`);

/** Every regular file under `dir` (symbolic links are not followed), sorted, without the manifest itself. */
export async function listFiles(dir: string): Promise<ManifestEntry[]> {
  const entries = await readdir(dir, { recursive: true });
  const files: ManifestEntry[] = [];
  for (const name of entries.sort()) {
    const path = join(dir, name);
    const info = await lstat(path);
    if (!info.isFile() || name === MANIFEST) continue;
    files.push({ path: relative(dir, path), size: info.size, sha256: await hashFile(path) });
  }
  return files;
}

/** Writes manifest.json: every file of the directory with its size and sha256. */
export async function writeManifest(dir: string): Promise<ManifestEntry[]> {
  const files = await listFiles(dir);
  await writeFile(join(dir, MANIFEST), `${JSON.stringify({ files }, null, 2)}\n`);
  return files;
}

/**
 * Makes the attempt the build's directory (one rename). False when another attempt was published
 * first (a directory that is not empty is never replaced): this one is removed then.
 */
export async function publish(attempt: string, final: string): Promise<boolean> {
  try {
    await rename(attempt, final);
    return true;
  } catch (error) {
    if (!['ENOTEMPTY', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
    await rm(attempt, { recursive: true, force: true });
    return false;
  }
}

/** Removes what earlier attempts of a published build left (their workers died mid-build). */
export async function removeStaleAttempts(root: string, runId: string, buildId: string): Promise<void> {
  const prefix = `${buildId}.attempt-`;
  const stale = (await readdir(join(root, runId)).catch(() => [])).filter((name) => name.startsWith(prefix));
  await Promise.all(stale.map((name) => rm(join(root, runId, name), { recursive: true, force: true })));
}

/** The BuildResult a published directory holds (written by the worker that published it). */
export async function publishedResult(dir: string): Promise<BuildResult> {
  return JSON.parse(await readFile(join(dir, BUILD_RESULT), 'utf8')) as BuildResult;
}
