import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, test, vi } from 'vitest';
import { type BuildLog, logsDir, openBuildLog } from '../../src/box/logs.js';
import { pruneCache } from '../../src/box/manage.js';
import { tempDir } from '../helpers/temp.js';

/** A Writable that keeps what it is given. */
function sink(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write: (chunk: Buffer, _e, done) => (chunks.push(chunk), done()) }), text: () => Buffer.concat(chunks).toString() };
}

const noWarning = (line: string) => expect.fail(`unexpected warning: ${line}`);

/** Writes `data` through the log's tee in chunks of `size` bytes, as a build's output comes. */
async function writeThrough(log: BuildLog, stream: Writable, data: Buffer, size: number): Promise<void> {
  const tee = log.tee(stream);
  for (let at = 0; at < data.length; at += size) await new Promise<void>((resolve) => tee.write(data.subarray(at, at + size), () => resolve()));
}

describe('the logs of past builds', () => {
  test('the output goes both on and into the log, between its header and footer', async () => {
    const cache = tempDir();
    const log = await openBuildLog(cache, { box: 'debian', arch: 'x86_64', argv: ['--box', 'debian', '--', 'x'] }, noWarning);
    const out = sink();
    const tee = log.tee(out.stream);
    await new Promise<void>((resolve) => tee.write('line one\n', () => resolve()));
    await log.close('exit status 7');
    expect(out.text()).toBe('line one\n');
    expect(readFileSync(log.path, 'utf8')).toMatch(/^# boxbuild --box debian -- x\n# started \S+\nline one\n\n# exit status 7 at \S+\n$/);
    expect(log.path).toMatch(/\/logs\/\d{4}-\d\d-\d\dT[\d-]+Z-debian-x86_64-\d+\.log$/);
  });

  test('the newest 100 stay; box prune drops them all', async () => {
    const cache = tempDir();
    const dir = logsDir(cache);
    await openBuildLog(cache, { box: 'b', arch: 'x86_64', argv: [] }, noWarning).then((log) => log.close('done'));
    for (let index = 0; index < 120; index++) writeFileSync(join(dir, `2000-01-01T00-00-${String(index).padStart(3, '0')}Z-b-x86_64-1.log`), 'old\n');
    await openBuildLog(cache, { box: 'b', arch: 'x86_64', argv: [] }, noWarning).then((log) => log.close('done'));
    const kept = readdirSync(dir).sort();
    expect(kept).toHaveLength(100);
    expect(kept[0]).toBe('2000-01-01T00-00-022Z-b-x86_64-1.log'); // the oldest went
    expect(kept.filter((name) => name.startsWith('20') && !name.startsWith('2000'))).toHaveLength(2);
    await pruneCache(cache);
    expect(readdirSync(dir)).toEqual([]);
  });

  test('a log keeps the head and the tail of the output, and never more, also while the build runs', async () => {
    const cache = tempDir();
    const output = Buffer.from(Array.from({ length: 1000 }, (_, index) => `line ${index}\n`).join(''));
    const log = await openBuildLog(cache, { box: 'b', arch: 'x86_64', argv: ['x'] }, noWarning, { head: 1000, tail: 500 });
    const out = sink();
    await writeThrough(log, out.stream, output, 333);
    expect(out.text()).toBe(output.toString()); // the output itself is whole
    await vi.waitFor(() => expect(readFileSync(log.path, 'utf8')).toMatch(/ and its last 500 B, written when the build ends\n$/));
    expect(statSync(log.path).size).toBeLessThan(1200);
    await log.close('exit status 1');
    const [head, tail] = [output.subarray(0, 1000).toString(), output.subarray(-500).toString()];
    expect(readFileSync(log.path, 'utf8')).toMatch(
      new RegExp(`^# boxbuild x\n# started \\S+\n${head}\n# boxbuild: this log keeps the first 1000 B of the output and its last 500 B, written when the build ends\n\n# boxbuild: ${output.length - 1500} bytes of output left out here\n${tail}\n# exit status 1 at \\S+\n$`),
    );
  });

  test('300 MB of output leave a log within the cap of all logs (256 MiB), also while the build runs', { timeout: 300_000 }, async () => {
    const cache = tempDir();
    const log = await openBuildLog(cache, { box: 'b', arch: 'x86_64', argv: [] }, noWarning);
    const chunk = Buffer.alloc(1 << 20, 'x\n');
    const discard = new Writable({ write: (_chunk, _e, done) => done() });
    const tee = log.tee(discard);
    let largest = 0;
    for (let written = 0; written < 300e6; written += chunk.length) {
      await new Promise<void>((resolve) => tee.write(chunk, () => resolve()));
      if (written % (32 << 20) === 0) largest = Math.max(largest, statSync(log.path).size);
    }
    await log.close('exit status 0');
    const size = statSync(log.path).size;
    expect(Math.max(largest, size)).toBeLessThan(256 << 20);
    expect(size).toBeGreaterThan(32 << 20);
    expect(readFileSync(log.path, 'utf8').slice(-200)).toMatch(/x\nx\n\n# exit status 0 at \S+\n$/); // the tail is there
  });
});
