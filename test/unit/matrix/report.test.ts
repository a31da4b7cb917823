import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { compareRuns } from '../../../src/matrix/report/changes.js';
import { htmlReport } from '../../../src/matrix/report/html.js';
import { writeReport } from '../../../src/matrix/report/index.js';
import { junitXml } from '../../../src/matrix/report/junit.js';
import { cleanText, formatSeconds } from '../../../src/matrix/report/text.js';
import type { BuildResult, MatrixRun } from '../../../src/matrix/types.js';
import { tempDir } from '../../helpers/temp.js';

const HOSTILE = 'a <script>alert("x")</script> & \'q\' ]]> \x1b[31mred\x1b[0m \0nul \x07bell \uFFFE \uD800 lone 🚀';

function result(id: string, status: BuildResult['status'], extra: Partial<BuildResult> = {}): BuildResult {
  return {
    id,
    name: `debian x86_64 ${id}`,
    label: id,
    box: 'debian',
    arch: 'x86_64',
    tags: ['nightly'],
    status,
    attempts: 1,
    startedAt: '2025-01-01T01:00:00.000Z',
    durationSeconds: 20,
    log: `/res/builds/${id}/log.txt`,
    logTail: ['line 1', 'line 2'],
    ranOn: 'local',
    artifacts: [],
    ...extra,
  };
}

const run = (builds: BuildResult[]): MatrixRun => ({ matrix: '/src/nightly.yaml', startedAt: '2025-01-01T01:00:00.000Z', endedAt: '2025-01-01T01:02:03.000Z', builds });

interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/** A small XML 1.0 reader that refuses what is not well-formed (nesting, entities, forbidden characters). */
function readXml(xml: string): XmlElement {
  expect(xml).not.toMatch(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u);
  const decode = (raw: string) => {
    expect(raw.replace(/&(amp|lt|gt|quot|#\d+);/g, '')).not.toMatch(/[<&]/);
    return raw.replace(/&(amp|lt|gt|quot|#\d+);/g, (_, name: string) => (name.startsWith('#') ? String.fromCodePoint(Number(name.slice(1))) : { amp: '&', lt: '<', gt: '>', quot: '"' }[name]!));
  };
  const token = /<\?xml[^?]*\?>\s*|<\/([\w.-]+)>|<([\w.-]+)((?:\s+[\w.-]+="[^"]*")*)\s*(\/?)>|([^<]+)/y;
  const root: XmlElement = { name: '#document', attributes: {}, children: [], text: '' };
  const open = [root];
  while (token.lastIndex < xml.length) {
    const at = token.lastIndex;
    const match = token.exec(xml);
    if (!match) throw new Error(`not well-formed at ${at}: ${xml.slice(at, at + 40)}`);
    const [, close, name, attributes, selfClosing, content] = match;
    const current = open.at(-1)!;
    if (close) {
      expect(close).toBe(current.name);
      open.pop();
    } else if (name) {
      const element = { name, attributes: Object.fromEntries([...attributes!.matchAll(/([\w.-]+)="([^"]*)"/g)].map(([, key, value]) => [key!, decode(value!)])), children: [], text: '' };
      current.children.push(element);
      if (!selfClosing) open.push(element);
    } else if (content) current.text += decode(content);
  }
  expect(open).toHaveLength(1);
  expect(root.children).toHaveLength(1);
  return root.children[0]!;
}

describe('JUnit XML', () => {
  test('a testsuite per box, a testcase per build; failures, errors, skipped with the log tail; it parses back', () => {
    const builds = [
      result('ok', 'passed'),
      result('bad', 'failed', { exitCode: 3 }),
      result('slow', 'timeout', { exitCode: 124, error: 'boxbuild: error: the run did not finish within --timeout 3 s' }),
      result('vm', 'error', { box: 'debian-system', exitCode: 71, error: 'boxbuild: error: QEMU failed' }),
      result('stopped', 'cancelled', { log: '', logTail: [] }),
    ];
    const suites = readXml(junitXml(run(builds)));
    expect(suites).toMatchObject({ name: 'testsuites', attributes: { tests: '5', failures: '2', errors: '1', skipped: '1', time: '100.000' } });
    expect(suites.children.map((suite) => [suite.attributes.name, suite.attributes.tests])).toEqual([['debian', '4'], ['debian-system', '1']]);
    const cases = suites.children.flatMap((suite) => suite.children);
    expect(cases.map((c) => [c.attributes.name, c.attributes.classname, c.children.map((child) => child.name)])).toEqual([
      ['debian x86_64 ok', 'debian.x86_64', ['system-out']],
      ['debian x86_64 bad', 'debian.x86_64', ['failure', 'system-out']],
      ['debian x86_64 slow', 'debian.x86_64', ['failure', 'system-out']],
      ['debian x86_64 stopped', 'debian.x86_64', ['skipped']],
      ['debian x86_64 vm', 'debian-system.x86_64', ['error', 'system-out']],
    ]);
    expect(cases[1]!.children[0]).toMatchObject({ attributes: { type: 'failed', message: 'the build failed (exit status 3)' }, text: 'line 1\nline 2' });
    expect(cases[2]!.children[0]!.attributes).toEqual({ type: 'timeout', message: 'boxbuild: error: the run did not finish within --timeout 3 s' });
    expect(cases[4]!.children[0]!.attributes.message).toBe('boxbuild: error: QEMU failed');
    expect(cases[0]!.children[0]!.text).toBe('log: /res/builds/ok/log.txt');
  });

  test('hostile names and log lines are escaped, terminal escapes and characters XML forbids dropped', () => {
    const hostile = result('h', 'failed', { name: HOSTILE, box: 'debian', logTail: [HOSTILE, 'line "two"\r'] });
    const xml = junitXml(run([hostile]));
    const testcase = readXml(xml).children[0]!.children[0]!;
    const clean = 'a <script>alert("x")</script> & \'q\' ]]> red nul bell   lone 🚀';
    expect(testcase.attributes.name).toBe(clean);
    expect(testcase.children[0]!.text).toBe(`${clean}\nline "two"\r`);
    expect(xml).not.toContain('<script>');
  });
});

describe('HTML report', () => {
  test('a grid of boxes and descriptions by architecture: status word, duration, log link and tail, provenance, changes', () => {
    const builds = [
      result('a', 'passed', { label: 'examples/hello', provenance: { boxbuild: '0.1.0', box: 'debian', version: '12.5-3', accelerator: 'tcg', sharing: '9p', warm: true }, artifacts: [{ path: 'hello.tar.gz', size: 120, sha256: 'ab'.repeat(32) }] }),
      result('b', 'failed', { label: 'examples/hello', arch: 'aarch64', exitCode: 3, attempts: 2 }),
      result('c', 'timeout', { label: 'examples/other', error: 'boxbuild: error: timed out' }),
      result('d', 'cancelled', { label: 'examples/other', arch: 'aarch64', log: '', logTail: [] }),
      result('e', 'error', { box: 'debian-system', label: 'examples/hello', ranOn: 'worker-1', log: '/res/builds/e f/log #1.txt' }),
    ];
    const previous = run([result('a', 'passed', { durationSeconds: 5 }), result('b', 'passed')]);
    const html = htmlReport(run(builds), compareRuns(run(builds), previous), previous, '/res');
    const rows = [...html.matchAll(/<tr><th>([^<]*)<\/th><td><code>([^<]*)<\/code>/g)].map(([, box, label]) => `${box} ${label}`);
    expect(rows).toEqual(['debian examples/hello', 'debian examples/other', 'debian-system examples/hello']);
    expect([...html.matchAll(/<thead>.*<\/thead>/g)][0]![0]).toContain('<th>aarch64</th><th>x86_64</th>');
    expect(html).toContain('<td class="cell failed" id="build-b"><div class="status">failed</div><div class="meta">20.0 s · exit 3 · 2 attempts</div><div class="change newly-failing"');
    expect(html).toContain('<div class="status">timed out</div>');
    expect(html).toContain('<div class="why">boxbuild: error: timed out</div>');
    expect(html).toContain('on worker-1');
    expect(html).toContain('<a href="builds/a/log.txt">whole log</a>');
    expect(html).toContain('<a href="builds/e%20f/log%20%231.txt">whole log</a>');
    expect(html).toContain('<pre>line 1\nline 2</pre>');
    expect(html).toContain('<dt>box version</dt><dd>12.5-3</dd><dt>accelerator</dt><dd>tcg</dd><dt>sharing</dt><dd>9p</dd><dt>warm start</dt><dd>true</dd>');
    expect(html).toContain('<dt>hello.tar.gz</dt><dd>120 B, sha256');
    expect(html).toContain('<span class="change slower">slower</span> debian x86_64 a: 5.0 s → 20.0 s (+300%)');
    expect(html).toContain('<span class="change newly-failing">newly failing</span> debian x86_64 b: passed → failed');
    expect(html).toContain('<span class="change new">new</span> debian x86_64 c');
    expect(html).toContain('<td class="none">—</td>'); // debian-system has no aarch64 build
    expect(html).toContain('<span class="passed">1 passed</span><span class="failed">1 failed</span><span class="error">1 error</span><span class="timeout">1 timed out</span><span class="cancelled">1 cancelled</span>');
    expect(html).not.toMatch(/<script|src=|https?:/);
  });

  test('everything from builds is escaped: a log line with <script> stays text', () => {
    const html = htmlReport(run([result('x', 'failed', { label: HOSTILE, name: HOSTILE, logTail: [HOSTILE], error: HOSTILE, tags: [HOSTILE], provenance: { box: HOSTILE } })]), [], undefined, '/res');
    expect(html).not.toContain('<script>');
    expect(html).not.toMatch(/[\0\x07\x1b\uFFFE]/);
    expect(html).toContain('a &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39; ]]&gt; red nul bell   lone 🚀');
    expect(html).toContain('No previous run of this matrix in this directory to compare with.');
  });
});

describe('changes against the previous run', () => {
  test('newly failing, fixed, slower (by more than 25% and 10 s), new and gone; cancelled builds are not compared', () => {
    const before = run([
      result('broke', 'passed'),
      result('fixed', 'error'),
      result('slower', 'passed', { durationSeconds: 40 }),
      result('a-bit-slower', 'passed', { durationSeconds: 39 }),
      result('proportionally', 'passed', { durationSeconds: 2 }),
      result('was-cancelled', 'cancelled'),
      result('now-cancelled', 'passed'),
      result('still-failing', 'failed'),
      result('gone', 'passed'),
    ]);
    const now = run([
      result('broke', 'timeout'),
      result('fixed', 'passed'),
      result('slower', 'passed', { durationSeconds: 50.5 }),
      result('a-bit-slower', 'passed', { durationSeconds: 49.5 }), // +10.5 s but 26.9%: slower
      result('proportionally', 'passed', { durationSeconds: 11 }), // +450% but 9 s: not
      result('was-cancelled', 'failed'),
      result('now-cancelled', 'cancelled'),
      result('still-failing', 'failed'),
      result('new', 'passed'),
    ]);
    expect(compareRuns(now, before).map((change) => [change.kind, change.id, change.detail])).toEqual([
      ['newly failing', 'broke', 'passed → timeout'],
      ['fixed', 'fixed', 'error → passed'],
      ['slower', 'slower', '40.0 s → 50.5 s (+26%)'],
      ['slower', 'a-bit-slower', '39.0 s → 49.5 s (+27%)'],
      ['new', 'new', 'not in the previous run'],
      ['gone', 'gone', 'not in this run'],
    ]);
    expect(compareRuns(now, undefined)).toEqual([]);
  });

  test('writeReport keeps the previous results.json as previous.json and reports against it; a broken one is no previous run', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'results.json'), '{"not": "a run"');
    expect(await writeReport(dir, run([result('a', 'failed')]))).toEqual({ changes: [] });
    expect(readdirSync(dir).sort()).toEqual(['index.html', 'junit.xml', 'results.json']);
    const second = await writeReport(dir, run([result('a', 'passed')]));
    expect(second.changes.map((change) => change.kind)).toEqual(['fixed']);
    expect(JSON.parse(readFileSync(join(dir, 'previous.json'), 'utf8')).builds[0].status).toBe('failed');
    expect(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')).builds[0].status).toBe('passed');
    expect(readFileSync(join(dir, 'index.html'), 'utf8')).toContain('<span class="change fixed">fixed</span>');
    expect(statSync(join(dir, 'index.html')).mode & 0o777).toBe(0o644 & ~process.umask());
  });
});

test('text helpers', () => {
  expect(cleanText('\x1b]0;title\x07\x1b[1;32mok\x1b[0m\x1bM')).toBe('ok');
  expect([0.84, 12.34, 245, 3725].map(formatSeconds)).toEqual(['0.8 s', '12.3 s', '4 min 05 s', '1 h 02 min']);
});
