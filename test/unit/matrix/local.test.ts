import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { chooseSlots } from '../../../src/matrix/local.js';
import { Progress, endLine } from '../../../src/matrix/progress.js';
import type { BuildResult, MatrixBuild } from '../../../src/matrix/types.js';

describe('slots', () => {
  test.each([
    [{ cores: 2, freeMiB: 20_000 }, 1024, 2],
    [{ cores: 16, freeMiB: 20_000 }, 2048, 8], // 20000 / 2304
    [{ cores: 16, freeMiB: 2_559 }, 1024, 1],
    [{ cores: 4, freeMiB: 100 }, 1024, 1], // never none
    [{ cores: 1, freeMiB: 100_000 }, 1024, 1],
  ])('%j with boxes of %i MiB: %i', (host, memory, slots) => {
    expect(chooseSlots(host, memory)).toBe(slots);
  });
});

const build = (id: string): MatrixBuild => ({ id, name: `debian x86_64 ${id}`, label: id, box: 'debian', arch: 'x86_64', description: '/d', args: [], retries: 0, tags: [] });
const result = (id: string, status: BuildResult['status'], extra: Partial<BuildResult> = {}): BuildResult => ({
  ...build(id),
  status,
  attempts: 1,
  startedAt: '',
  durationSeconds: 12.34,
  log: `/r/builds/${id}/log.txt`,
  logTail: [],
  ranOn: 'local',
  artifacts: [],
  ...extra,
});

function capture(tty: boolean) {
  const stream = Object.assign(new PassThrough(), { isTTY: tty, columns: 60 });
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { stream, text: () => text };
}

describe('progress', () => {
  test('plain lines without a terminal', () => {
    const out = capture(false);
    const progress = new Progress(out.stream, 3);
    progress.started(build('a'));
    progress.started(build('b'));
    progress.ended(result('a', 'passed'));
    progress.ended(result('b', 'failed', { exitCode: 3 }));
    progress.ended(result('c', 'error', { exitCode: 71, error: 'boxbuild: error: QEMU failed' }));
    progress.close();
    expect(out.text().split('\n')).toEqual([
      'started debian x86_64 a',
      'started debian x86_64 b',
      'passed debian x86_64 a in 12.3 s',
      'FAILED debian x86_64 b (exit 3) in 12.3 s, log: /r/builds/b/log.txt',
      'ERROR debian x86_64 c (exit 71) in 12.3 s, log: /r/builds/c/log.txt: boxbuild: error: QEMU failed',
      '',
    ]);
    expect(endLine(result('d', 'timeout', { exitCode: 124 }))).toBe('TIMED OUT debian x86_64 d (exit 124) in 12.3 s, log: /r/builds/d/log.txt');
  });

  test('on a terminal: finished builds for good, a redrawn block of running builds and a summary, cut to its width', () => {
    const out = capture(true);
    const progress = new Progress(out.stream, 2);
    progress.started(build('a'));
    progress.started(build(`b${'x'.repeat(80)}`));
    progress.ended(result('a', 'passed'));
    progress.close();
    const writes = out.text().split('\r');
    expect(writes[1]).toBe('\x1b[2K  running debian x86_64 a  0.0 s\n\x1b[2K[0/2] 1 running\n\x1b[J\x1b[2A');
    // Two running builds and the summary, the long name cut to the 60 columns.
    expect(writes[2]).toBe(`\x1b[2K  running debian x86_64 a  0.0 s\n\x1b[2K  running debian x86_64 b${'x'.repeat(33)}…\n\x1b[2K[0/2] 2 running\n\x1b[J\x1b[3A`);
    expect(writes[3]).toBe(`\x1b[2Kpassed debian x86_64 a in 12.3 s\n\x1b[2K  running debian x86_64 b${'x'.repeat(33)}…\n\x1b[2K[1/2] 1 running, 1 passed\n\x1b[J\x1b[2A`);
    expect(writes[4]).toBe('\x1b[J'); // closed: the block is gone
  });
});
