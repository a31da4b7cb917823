import type { BuildResult, BuildStatus, MatrixRun } from '../types.js';
import { formatSeconds } from './text.js';

/** How a build changed against the previous run of the matrix (the same id). */
export type ChangeKind = 'newly failing' | 'fixed' | 'slower' | 'new' | 'gone';

export interface Change {
  kind: ChangeKind;
  id: string;
  name: string;
  /** "passed → failed", "12.0 s → 40.0 s", … */
  detail: string;
}

/** Slower counts when the build took this much longer, both in proportion and in seconds. */
const SLOWER_RATIO = 1.25;
const SLOWER_SECONDS = 10;

const FAILING: BuildStatus[] = ['failed', 'error', 'timeout'];

function changeOf(now: BuildResult, before: BuildResult | undefined): Change | undefined {
  const about = { id: now.id, name: now.name };
  if (!before) return { ...about, kind: 'new', detail: 'not in the previous run' };
  const statuses = `${before.status} → ${now.status}`;
  if (before.status === 'passed' && FAILING.includes(now.status)) return { ...about, kind: 'newly failing', detail: statuses };
  if (FAILING.includes(before.status) && now.status === 'passed') return { ...about, kind: 'fixed', detail: statuses };
  const [was, is] = [before.durationSeconds, now.durationSeconds];
  if (before.status === 'passed' && now.status === 'passed' && is > was * SLOWER_RATIO && is - was > SLOWER_SECONDS) {
    return { ...about, kind: 'slower', detail: `${formatSeconds(was)} → ${formatSeconds(is)} (+${Math.round((is / was - 1) * 100)}%)` };
  }
  return undefined;
}

/** What changed since `previous` (none when there was no previous run); builds cancelled in either run are not compared. */
export function compareRuns(current: MatrixRun, previous: MatrixRun | undefined): Change[] {
  if (!previous) return [];
  const before = new Map(previous.builds.map((build) => [build.id, build]));
  const changes = current.builds.flatMap((build) => changeOf(build, before.get(build.id)) ?? []);
  const ids = new Set(current.builds.map((build) => build.id));
  const gone = previous.builds.filter((build) => !ids.has(build.id)).map((build): Change => ({ kind: 'gone', id: build.id, name: build.name, detail: 'not in this run' }));
  return [...changes, ...gone];
}
