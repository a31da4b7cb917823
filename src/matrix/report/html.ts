import { relative, sep } from 'node:path';
import { VERSION } from '../../version.js';
import type { BuildResult, BuildStatus, MatrixRun } from '../types.js';
import type { Change } from './changes.js';
import { escapeAttribute as attr, escapeText as text, formatSeconds } from './text.js';

/*
 * index.html: one self-contained page (inline CSS, no script, nothing fetched; a CSP says so to the
 * browser) with a grid of the builds, rows box and description, columns architectures. Every
 * string in it comes through escapeText/escapeAttribute: a log line may hold `<script>`.
 */

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
.summary span { margin-right: 1em; font-weight: 600; }
table.grid { border-collapse: collapse; margin-top: 1em; }
.grid th, .grid td { border: 1px solid #ccc; padding: 6px 8px; vertical-align: top; text-align: left; }
.grid thead th { background: #f3f3f3; }
.cell { min-width: 16em; max-width: 40em; }
.status { font-weight: 700; text-transform: uppercase; letter-spacing: 0.03em; }
.passed { background: #e3f6e5; } .passed .status, span.passed { color: #17692a; }
.failed { background: #fde2e1; } .failed .status, span.failed { color: #b3141b; }
.error { background: #f3e3f8; } .error .status, span.error { color: #7a1f99; }
.timeout { background: #fff1d6; } .timeout .status, span.timeout { color: #9a5b00; }
.cancelled { background: #eee; } .cancelled .status, span.cancelled { color: #555; }
td.none { color: #999; text-align: center; }
.meta, .tags { color: #555; font-size: 12px; }
.why { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; }
.change { display: inline-block; font-size: 12px; font-weight: 600; padding: 0 6px; border-radius: 8px; background: #fff; border: 1px solid currentColor; }
.newly-failing { color: #b3141b; } .fixed { color: #17692a; } .slower { color: #9a5b00; } .new, .gone { color: #245; }
pre { background: #fff; border: 1px solid #ddd; padding: 6px; max-height: 30em; overflow: auto; white-space: pre-wrap; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0 1em; margin: 0.4em 0; font-size: 12px; }
dt { color: #555; } dd { margin: 0; }
`;

const WORDS: Record<BuildStatus, string> = { passed: 'passed', failed: 'failed', error: 'error', timeout: 'timed out', cancelled: 'cancelled' };
const ORDER: BuildStatus[] = ['passed', 'failed', 'error', 'timeout', 'cancelled'];
/** The --result fields worth showing, as people call them. */
const PROVENANCE: Array<[string, string]> = [
  ['boxbuild', 'boxbuild'],
  ['box', 'box'],
  ['version', 'box version'],
  ['arch', 'architecture'],
  ['accelerator', 'accelerator'],
  ['sharing', 'sharing'],
  ['warm', 'warm start'],
  ['startedAt', 'started'],
];

const cssClass = (kind: string) => kind.replace(/ /g, '-');

/** A relative link from the results directory to `path`, each segment URL-encoded. */
const link = (dir: string, path: string) => relative(dir, path).split(sep).map(encodeURIComponent).join('/');

function provenance(build: BuildResult): string {
  const found = PROVENANCE.filter(([key]) => build.provenance?.[key] !== undefined);
  const facts = found.map(([key, label]) => `<dt>${text(label)}</dt><dd>${text(String(build.provenance![key]))}</dd>`).join('');
  const artifacts = build.artifacts.map((artifact) => `<dt>${text(artifact.path)}</dt><dd>${artifact.size} B, sha256 <code title="${attr(artifact.sha256)}">${text(artifact.sha256.slice(0, 16))}…</code></dd>`).join('');
  if (!facts && !artifacts) return '';
  return `<details><summary>provenance${build.artifacts.length ? ` and ${build.artifacts.length} artifact${build.artifacts.length === 1 ? '' : 's'}` : ''}</summary><dl>${facts}${artifacts}</dl></details>`;
}

function cell(build: BuildResult | undefined, change: Change | undefined, dir: string): string {
  if (!build) return '<td class="none">—</td>';
  const meta = [
    formatSeconds(build.durationSeconds),
    ...(build.exitCode !== undefined && build.status !== 'passed' ? [`exit ${build.exitCode}`] : []),
    ...(build.attempts > 1 ? [`${build.attempts} attempts`] : []),
    ...(build.ranOn !== 'local' ? [`on ${build.ranOn}`] : []),
  ];
  return [
    `<td class="cell ${build.status}" id="build-${attr(build.id)}">`,
    `<div class="status">${WORDS[build.status]}</div>`,
    `<div class="meta">${text(meta.join(' · '))}</div>`,
    change ? `<div class="change ${cssClass(change.kind)}" title="${attr(change.detail)}">${text(change.kind)}</div>` : '',
    build.error ? `<div class="why">${text(build.error)}</div>` : '',
    build.log ? `<div><a href="${attr(link(dir, build.log))}">whole log</a></div>` : '',
    build.logTail.length ? `<details><summary>${build.logTail.length === 1 ? 'the last line' : `the last ${build.logTail.length} lines`} of the log</summary><pre>${text(build.logTail.join('\n'))}</pre></details>` : '',
    provenance(build),
    '</td>',
  ].join('');
}

function changeList(changes: Change[], previous: MatrixRun | undefined): string {
  if (!previous) return '<p>No previous run of this matrix in this directory to compare with.</p>';
  const since = `since the previous run (${text(previous.startedAt)})`;
  if (changes.length === 0) return `<p>No changes ${since}.</p>`;
  const items = changes.map((change) => `<li><span class="change ${cssClass(change.kind)}">${text(change.kind)}</span> ${text(change.name)}: ${text(change.detail)}</li>`);
  return `<p>Changes ${since}:</p><ul>${items.join('')}</ul>`;
}

/** The HTML report of `run`; `dir` is where it is written (log links are relative to it). */
export function htmlReport(run: MatrixRun, changes: Change[], previous: MatrixRun | undefined, dir: string): string {
  const arches = [...new Set(run.builds.map((build) => build.arch))].sort();
  const rows = new Map<string, BuildResult[]>();
  for (const build of run.builds) rows.set(`${build.box}\0${build.label}`, [...(rows.get(`${build.box}\0${build.label}`) ?? []), build]);
  const changeOf = new Map(changes.map((change) => [change.id, change]));
  const body = [...rows.values()].map((builds) => {
    const first = builds[0]!;
    const tags = first.tags.length ? `<div class="tags">${text(first.tags.join(', '))}</div>` : '';
    const cells = arches.map((arch) => {
      const build = builds.find((candidate) => candidate.arch === arch);
      return cell(build, build && changeOf.get(build.id), dir);
    });
    return `<tr><th>${text(first.box)}</th><td><code>${text(first.label)}</code>${tags}</td>${cells.join('')}</tr>`;
  });
  const counts = ORDER.map((status) => [status, run.builds.filter((build) => build.status === status).length] as const).filter(([, count]) => count > 0);
  const summary = counts.map(([status, count]) => `<span class="${status}">${count} ${WORDS[status]}</span>`).join('');
  const took = (Date.parse(run.endedAt) - Date.parse(run.startedAt)) / 1000;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${text(`${counts.map(([status, count]) => `${count} ${WORDS[status]}`).join(', ')}: boxbuild matrix ${run.matrix}`)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>boxbuild matrix <code>${text(run.matrix)}</code></h1>
<p class="summary">${summary}</p>
<p class="meta">Started ${text(run.startedAt)}, took ${text(formatSeconds(took))}; ${run.builds.length} builds. Also as <a href="results.json">results.json</a> and <a href="junit.xml">junit.xml</a>.</p>
<h2>Changes</h2>
${changeList(changes, previous)}
<h2>Builds</h2>
<table class="grid">
<thead><tr><th>box</th><th>description and arguments</th>${arches.map((arch) => `<th>${text(arch)}</th>`).join('')}</tr></thead>
<tbody>
${body.join('\n')}
</tbody>
</table>
<p class="meta">Written by boxbuild ${text(VERSION)}.</p>
</body>
</html>
`;
}
