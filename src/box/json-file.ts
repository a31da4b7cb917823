import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { PRIVATE_FILE } from './modes.js';

/**
 * Reads a JSON file boxbuild wrote into its cache. Missing, truncated, malformed or of another
 * shape, it is undefined: a cache file is something to rebuild, never a reason to fail.
 */
export async function readJsonFile<T>(path: string, isValid: (value: unknown) => value is T): Promise<T | undefined> {
  try {
    const value: unknown = JSON.parse(await readFile(path, 'utf8'));
    return isValid(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a file so that readers see the old content or the whole new one: a temp file beside it, then rename. */
export async function writeFileAtomic(path: string, data: string, mode = PRIVATE_FILE): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temp, data, { mode });
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

export const writeJsonFile = (path: string, value: unknown) => writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);

export const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
