import { readdirSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeJsonFile } from '../json-file.js';
import { PRIVATE_DIR } from '../modes.js';
import type { BoxEntry } from '../registry.js';

/*
 * Imported boxes are in no registry file the user wrote: `box import` keeps each one's entry in the
 * cache, `<cache>/imported/NAME.json` (a registry document of that box alone), which loadRegistry
 * reads after the bundled registry and before the user's files.
 */

const importedDir = (root: string) => join(root, 'imported');

/** The registry files of the boxes imported into the cache at `root`. */
export function importedRegistryFiles(root: string): string[] {
  try {
    return readdirSync(importedDir(root))
      .filter((file) => file.endsWith('.json'))
      .sort()
      .map((file) => join(importedDir(root), file));
  } catch {
    return [];
  }
}

/** Writes (or replaces) an imported box's entry, in the registry's own format. */
export async function saveImportedEntry(root: string, entry: BoxEntry): Promise<void> {
  await mkdir(importedDir(root), { recursive: true, mode: PRIVATE_DIR });
  const { description, protocol, make, buildProgram, memoryMiB, cpus, console, cmdline } = entry;
  const arches = Object.fromEntries(Object.entries(entry.arches).map(([arch, variant]) => [arch, { cmdline: variant!.cmdline }]));
  await writeJsonFile(join(importedDir(root), `${entry.name}.json`), { boxes: { [entry.name]: { description, protocol, make, buildProgram, memoryMiB, cpus, console, cmdline, arches } } });
}

/** Forgets an imported box (`box remove`). */
export async function removeImportedEntry(root: string, name: string): Promise<void> {
  await rm(join(importedDir(root), `${name}.json`), { force: true });
}
