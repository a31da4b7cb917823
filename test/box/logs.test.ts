import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { logsDir, openBuildLog } from '../../src/box/logs.js';
import { pruneCache } from '../../src/box/manage.js';
import { tempDir } from '../helpers/temp.js';

/** A Writable that keeps what it is given. */
function sink(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write: (chunk: Buffer, _e, done) => (chunks.push(chunk), done()) }), text: () => Buffer.concat(chunks).toString() };
}

describe('the logs of past builds', () => {
  test('the output goes both on and into the log, between its header and footer', async () => {
    const cache = tempDir();
    const log = await openBuildLog(cache, { box: 'debian', arch: 'x86_64', argv: ['--box', 'debian', '--', 'x'] });
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
    await openBuildLog(cache, { box: 'b', arch: 'x86_64', argv: [] }).then((log) => log.close('done'));
    for (let index = 0; index < 120; index++) writeFileSync(join(dir, `2000-01-01T00-00-${String(index).padStart(3, '0')}Z-b-x86_64-1.log`), 'old\n');
    await openBuildLog(cache, { box: 'b', arch: 'x86_64', argv: [] }).then((log) => log.close('done'));
    const kept = readdirSync(dir).sort();
    expect(kept).toHaveLength(100);
    expect(kept[0]).toBe('2000-01-01T00-00-022Z-b-x86_64-1.log'); // the oldest went
    expect(kept.filter((name) => name.startsWith('20') && !name.startsWith('2000'))).toHaveLength(2);
    await pruneCache(cache);
    expect(readdirSync(dir)).toEqual([]);
  });
});
