import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isObject, writeFileAtomic } from '../../box/json-file.js';
import type { MatrixRun } from '../types.js';
import { type Change, compareRuns } from './changes.js';
import { htmlReport } from './html.js';
import { junitXml } from './junit.js';

export type { Change, ChangeKind } from './changes.js';

/** What a results directory holds besides the builds' own directories. */
export const REPORT_FILES = { results: 'results.json', previous: 'previous.json', junit: 'junit.xml', html: 'index.html' };

/** Readable by whoever serves the results directory. */
const REPORT_MODE = 0o644;

export interface Report {
  /** Against the previous results.json of the directory (none when there was none). */
  changes: Change[];
  previous?: MatrixRun;
}

function isRun(value: unknown): value is MatrixRun {
  return (
    isObject(value) &&
    typeof value.startedAt === 'string' &&
    Array.isArray(value.builds) &&
    value.builds.every((build) => isObject(build) && typeof build.id === 'string' && typeof build.name === 'string' && typeof build.status === 'string' && typeof build.durationSeconds === 'number')
  );
}

/** A results.json, or undefined when it is missing or not one. */
export async function readRun(path: string): Promise<{ run: MatrixRun; text: string } | undefined> {
  try {
    const text = await readFile(path, 'utf8');
    const run: unknown = JSON.parse(text);
    return isRun(run) ? { run, text } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes the report of `run` into `dir`: results.json (the run), junit.xml and index.html, each
 * replaced whole. The results.json found there before is the previous run: kept as previous.json,
 * and the report shows the changes against it.
 */
export async function writeReport(dir: string, run: MatrixRun): Promise<Report> {
  await mkdir(dir, { recursive: true });
  const file = (name: keyof typeof REPORT_FILES) => join(dir, REPORT_FILES[name]);
  const previous = await readRun(file('results'));
  if (previous) await writeFileAtomic(file('previous'), previous.text, REPORT_MODE);
  const changes = compareRuns(run, previous?.run);
  await writeFileAtomic(file('results'), `${JSON.stringify(run, null, 2)}\n`, REPORT_MODE);
  await writeFileAtomic(file('junit'), junitXml(run), REPORT_MODE);
  await writeFileAtomic(file('html'), htmlReport(run, changes, previous?.run, dir), REPORT_MODE);
  return { changes, ...(previous ? { previous: previous.run } : {}) };
}
