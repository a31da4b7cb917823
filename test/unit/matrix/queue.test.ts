import { mkdirSync, realpathSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Capabilities, canRun, queueOrder } from '../../../src/matrix/queue/capabilities.js';
import { SAFE_NAME, checkJob, jobId, parseQueueName, queueName } from '../../../src/matrix/queue/protocol.js';
import { parseRedisUrl } from '../../../src/matrix/queue/redis.js';
import { newRunId } from '../../../src/matrix/queue/submit.js';
import { tempDir } from '../../helpers/temp.js';

describe('queue names', () => {
  test('one queue per box and architecture, read back whatever the box name holds', () => {
    expect(queueName('debian', 'x86_64')).toBe('debian@x86_64');
    expect(parseQueueName('debian@x86_64')).toEqual({ box: 'debian', arch: 'x86_64' });
    expect(parseQueueName(queueName('my.box-2_x', 'aarch64'))).toEqual({ box: 'my.box-2_x', arch: 'aarch64' });
    // BullMQ refuses ":" in queue names: the separator is one a box name cannot hold.
    expect(queueName('debian', 'aarch64')).not.toContain(':');
  });

  test('names that are no queue of ours', () => {
    for (const name of ['debian', '@x86_64', 'debian@sparc', 'debian@', 'queues']) expect(parseQueueName(name), name).toBeUndefined();
  });

  test("job ids: stable per run and build, and without the \":\" BullMQ refuses", () => {
    expect(jobId('20260101-0102', 'a1b2c3')).toBe('20260101-0102.a1b2c3');
    expect(jobId('r', 'b')).toBe(jobId('r', 'b'));
    expect(jobId('r', 'b')).not.toContain(':');
  });

  test('run ids: the start time and random letters, fit for job ids and directory names', () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    expect(newRunId(at)).toMatch(/^20260102-030405-[0-9a-f]{6}$/);
    expect(newRunId(at)).not.toBe(newRunId(at));
    expect(SAFE_NAME.test(newRunId())).toBe(true);
  });

  test('names used in keys and paths', () => {
    for (const name of ['w1', 'build-host.example', 'ci_2']) expect(SAFE_NAME.test(name), name).toBe(true);
    for (const name of ['', 'a/b', '..', '.hidden', 'a:b', 'a b', '-x']) expect(SAFE_NAME.test(name), name).toBe(false);
  });
});

describe('capability matching', () => {
  const worker: Capabilities = {
    arches: ['x86_64', 'aarch64'],
    kvm: false,
    known: ['debian@x86_64', 'debian@aarch64', 'debian-system@x86_64', 'debian-system@aarch64', 'fedora@x86_64'],
    cached: ['debian-system@aarch64', 'debian@x86_64'],
  };

  test('a worker runs what it has QEMU for and its registry knows', () => {
    expect(canRun(worker, 'debian@x86_64')).toBe(true);
    expect(canRun(worker, 'fedora@x86_64')).toBe(true); // not cached: fetched first
    expect(canRun({ ...worker, arches: ['x86_64'] }, 'debian@aarch64')).toBe(false); // no qemu-system-aarch64
    expect(canRun(worker, 'private@x86_64')).toBe(false); // a box its registry does not have
    expect(canRun({ ...worker, known: [...worker.known, 'debian@s390x'] }, 'debian@s390x')).toBe(false);
    expect(canRun(worker, 'garbage')).toBe(false);
  });

  test('queues of cached boxes come first, then the others it can run; the rest never', () => {
    const queues = ['fedora@x86_64', 'debian@aarch64', 'debian@x86_64', 'debian-system@aarch64', 'private@x86_64', 'debian@s390x', 'debian@x86_64'];
    expect(queueOrder(queues, worker)).toEqual(['debian-system@aarch64', 'debian@x86_64', 'debian@aarch64', 'fedora@x86_64']);
    expect(queueOrder(queues, { ...worker, cached: [] })).toEqual(['debian-system@aarch64', 'debian@aarch64', 'debian@x86_64', 'fedora@x86_64']);
    expect(queueOrder(queues, { ...worker, arches: [] })).toEqual([]);
  });
});

describe('Redis URLs', () => {
  test('redis://[USER:PASSWORD@]HOST[:PORT][/DB]', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6390')).toEqual({ connection: { host: '127.0.0.1', port: 6390, username: undefined, password: undefined, db: 0 }, shown: 'redis://127.0.0.1:6390' });
    expect(parseRedisUrl('redis://queue.example').connection).toMatchObject({ host: 'queue.example', port: 6379, db: 0 });
    expect(parseRedisUrl('redis://queue.example:7000/3').connection).toMatchObject({ port: 7000, db: 3 });
    expect(parseRedisUrl('redis://[::1]:7000').connection.host).toBe('::1');
  });

  test('a password is used, never shown', () => {
    const target = parseRedisUrl('redis://ci:s%40cret@queue.example:6379/1');
    expect(target.connection).toMatchObject({ username: 'ci', password: 's@cret', db: 1 });
    expect(target.shown).toBe('redis://ci:***@queue.example:6379/1');
    expect(parseRedisUrl('redis://:only@h').connection).toMatchObject({ username: undefined, password: 'only' });
  });

  test.each([
    ['queue.example:6379', 'not a URL'],
    ['http://queue.example', 'the scheme is http, not redis'],
    ['rediss://queue.example', 'the scheme is rediss, not redis'],
    ['redis://', 'no host'],
    ['redis://h:99999', 'not a URL'],
    ['redis://h/zero', 'the database "zero" is not a number'],
    ['redis://h/1/2', 'the database "1/2" is not a number'],
    ['redis://h?db=1', 'a query or fragment'],
  ])('%s is refused up front: %s', (text, why) => {
    expect(() => parseRedisUrl(text)).toThrow(expect.objectContaining({ kind: 'usage', message: expect.stringContaining(why) }));
    expect(() => parseRedisUrl(text)).toThrow(/expected redis:\/\/\[USER:PASSWORD@\]HOST\[:PORT\]\[\/DB\]/);
  });
});

describe('a job as a worker takes it (what is in Redis is hostile input)', () => {
  const root = realpathSync(tempDir());
  const allowed = [join(root, 'checkouts')];
  mkdirSync(join(root, 'checkouts/app'), { recursive: true });
  mkdirSync(join(root, 'secret'));
  symlinkSync(join(root, 'secret'), join(root, 'checkouts/escape'));
  const job = (build: Record<string, unknown> = {}, data: Record<string, unknown> = {}) => ({
    runId: '20261206-224007-dc5067',
    artifacts: join(root, 'checkouts/artifacts'),
    build: { id: 'a1b2c3', name: 'x', box: 'debian', arch: 'x86_64', description: join(root, 'checkouts/app'), args: ['--x'], tags: [], retries: 0, label: 'app', ...build },
    ...data,
  });

  test('a job inside the allowed directories is taken, its own target dropped (a build goes only to the artifacts)', () => {
    const taken = checkJob(job({ target: '/home/someone/.ssh' }), allowed);
    expect(taken.build.target).toBeUndefined();
    expect(taken.build.description).toBe(join(root, 'checkouts/app'));
    expect(checkJob(job({}, { artifacts: '/anywhere' }), allowed, '/srv/own').artifacts).toBe('/srv/own'); // the worker's own --artifacts wins, unchecked
  });

  test.each([
    ['a description outside', { build: { description: join(root, 'secret') } }, 'outside the directories'],
    ['a description through a link that leads outside', { build: { description: join(root, 'checkouts/escape') } }, 'outside the directories'],
    ['a relative description', { build: { description: 'checkouts/app' } }, 'outside the directories'],
    ['a box file outside', { build: { registryFiles: ['/etc/passwd'] } }, 'outside the directories'],
    ['an artifact directory outside', { data: { artifacts: '/etc' } }, 'outside the directories'],
    ['a run id that climbs out of the artifacts', { data: { runId: '../../etc' } }, 'no run or build id'],
    ['a build id with a slash', { build: { id: 'a/../../b' } }, 'no run or build id'],
    ['an unknown architecture', { build: { arch: 'sparc' } }, 'does not name'],
    ['arguments that are not strings', { build: { args: [1] } }, 'lists of strings'],
    ['endless retries', { build: { retries: 1e9 } }, 'retries (0 to 10)'],
  ] as const)('refused: %s', (_, change, said) => {
    const changed = 'data' in change ? job({}, change.data) : job(change.build);
    expect(() => checkJob(changed, allowed)).toThrow(said);
  });
});
