import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { PRIVATE_DIR, PRIVATE_FILE } from './modes.js';

/*
 * The logs of past builds, `<cache>/logs/<time>-<box>-<arch>-<pid>.log`: what the build wrote on
 * stdout and stderr, as it came, between a header (boxbuild's argv) and a footer (how it ended), so
 * that a nightly build that failed can be read the next morning. The newest KEEP logs stay, and at
 * most CAP_BYTES of them; `box prune` drops them all.
 */

const KEEP = 100;
const CAP_BYTES = 256 * 1024 * 1024;

export const logsDir = (cacheRoot: string) => join(cacheRoot, 'logs');

export interface BuildLog {
  path: string;
  /** Passes what is written on to `stream` and into the log. */
  tee(stream: Writable): Writable;
  /** Writes the footer and closes the log. */
  close(ending: string): Promise<void>;
}

/** Starts the log of a build; older logs beyond the bounds are removed first. */
export async function openBuildLog(cacheRoot: string, about: { box: string; arch: string; argv: string[] }): Promise<BuildLog> {
  const dir = logsDir(cacheRoot);
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  await trimLogs(dir);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const path = join(dir, `${stamp}-${about.box}-${about.arch}-${process.pid}.log`);
  const file = createWriteStream(path, { flags: 'wx', mode: PRIVATE_FILE });
  file.on('error', () => {}); // a full disk loses the log, never the build
  file.write(`# boxbuild ${about.argv.join(' ')}\n# started ${new Date().toISOString()}\n`);
  return {
    path,
    tee: (stream) =>
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          file.write(chunk);
          // A closed stdout is the CLI's to handle (it ends the run); the log goes on.
          stream.write(chunk, () => done());
        },
      }),
    close: (ending) => new Promise<void>((resolve) => file.end(`\n# ${ending} at ${new Date().toISOString()}\n`, () => resolve())),
  };
}

/** Keeps the newest logs within the bounds (to make room for one more). */
async function trimLogs(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.log')).sort().reverse(); // newest first: names start with the time
  let total = 0;
  for (const [index, name] of names.entries()) {
    const path = join(dir, name);
    total += (await stat(path).catch(() => ({ size: 0 }))).size;
    if (index >= KEEP - 1 || total > CAP_BYTES) await rm(path, { force: true });
  }
}

/** Every log, for `box prune`. */
export async function allLogs(cacheRoot: string): Promise<string[]> {
  const dir = logsDir(cacheRoot);
  return (await readdir(dir).catch(() => [] as string[])).map((name) => join(dir, name));
}
