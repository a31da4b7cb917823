import { readdir, readlink, realpath, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseMemoryMiB } from '../util/size.js';
import { isObject, readJsonFile } from './json-file.js';

/** Saved VM states (warm start) live in `<cache>/states`; see src/driver/qemu/warm.ts for their layout. */
export const statesDir = (cacheRoot: string) => join(cacheRoot, 'states');

export interface StateInfo {
  /** The link `<cache>/states/<shape>` and the state directory it names. */
  link: string;
  dir: string;
  box: string;
  arch: string;
  /** The box version directory the state was booted from. */
  boxDir: string;
  size: number;
  savedAt: string;
}

type StateAbout = Omit<StateInfo, 'link' | 'dir'>;

/** Whether a parsed state.json has the fields boxbuild relies on. */
const isStateAbout = (value: unknown): value is StateAbout =>
  isObject(value) &&
  ['box', 'arch', 'boxDir', 'savedAt'].every((field) => typeof value[field] === 'string') &&
  typeof value.size === 'number';

/** The current state of every VM shape (a state whose state.json is missing or invalid counts as none). */
export async function listStates(cacheRoot: string): Promise<StateInfo[]> {
  const root = statesDir(cacheRoot);
  const names = await readdir(root).catch(() => [] as string[]);
  const states = await Promise.all(
    names
      .filter((name) => !name.includes('.'))
      .map(async (name) => {
        const link = join(root, name);
        const target = await readlink(link).catch(() => undefined);
        if (!target) return undefined;
        const dir = join(root, target);
        const about = await readJsonFile(join(dir, 'state.json'), isStateAbout);
        return about ? { ...about, link, dir } : undefined;
      }),
  );
  return states.filter((state): state is StateInfo => state !== undefined);
}

/**
 * Whether a state directory is being saved: its name (`<time>-<pid>`, see saveState) says when and
 * by whom, the saving process still runs, and there is no state.json yet (written last).
 */
function beingSaved(dir: string): boolean {
  const match = /\/([0-9a-z]+)-(\d+)$/.exec(dir);
  if (!match || !(parseInt(match[1]!, 36) <= Date.now()) || existsSync(join(dir, 'state.json'))) return false;
  try {
    process.kill(Number(match[2]), 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * What `box prune` removes of the states: directories no link names any more (replaced by a newer
 * state of the same shape, or left by a run that died while saving) and the states of box
 * versions that are no longer current. A state a live process is saving stays.
 */
export async function staleStatePaths(cacheRoot: string): Promise<string[]> {
  const root = statesDir(cacheRoot);
  const current = await listStates(cacheRoot);
  const live = new Set<string>();
  const stale: string[] = [];
  for (const state of current) {
    const boxCurrent = await realpath(join(state.boxDir, '..', 'current')).catch(() => undefined);
    if (boxCurrent === state.boxDir) live.add(state.dir);
    else stale.push(state.link);
  }
  for (const name of (await readdir(root).catch(() => [] as string[])).filter((n) => n.endsWith('.d'))) {
    for (const entry of await readdir(join(root, name))) {
      const dir = join(root, name, entry);
      if (!live.has(dir) && !beingSaved(dir)) stale.push(dir);
    }
  }
  return stale;
}

/** The most the current states may take together: $BOXBUILD_STATES_MAX (e.g. 4G), else 2 GiB. */
export function statesCapBytes(env: NodeJS.ProcessEnv = process.env): number {
  return (env.BOXBUILD_STATES_MAX ? parseMemoryMiB(env.BOXBUILD_STATES_MAX, 'BOXBUILD_STATES_MAX') : 2048) * 1024 * 1024;
}

/**
 * Run after a state was saved (`keep`): removes what `box prune` would (replaced states, those of old
 * box versions), then the oldest states of other shapes while all of them take more than `capBytes`.
 * A run restoring a state removed meanwhile boots cold instead; nothing here fails a build.
 */
export async function tidyStates(cacheRoot: string, keep: string, capBytes: number): Promise<void> {
  const remove = (path: string) => rm(path, { recursive: true, force: true }).catch(() => {});
  for (const path of await staleStatePaths(cacheRoot)) if (path !== keep) await remove(path);
  const current = (await listStates(cacheRoot)).sort((a, b) => a.savedAt.localeCompare(b.savedAt));
  let total = current.reduce((sum, state) => sum + state.size, 0);
  for (const state of current) {
    if (total <= capBytes) break;
    if (state.dir === keep) continue;
    await remove(state.link);
    await remove(state.dir);
    total -= state.size;
  }
}
