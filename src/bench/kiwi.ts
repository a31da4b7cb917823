import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { cacheRoot } from '../box/cache.js';
import { fixtureFiles, fixtureRegistry, makeKiwiFixture } from './kiwi-fixture.js';
import { CLI, median, seconds, table, timeCli } from './measure.js';

const RUNS = 5;

/** Serves the fixture's files (whole, no validators: the update check compares the package list). */
async function serveFixture(files: Map<string, Buffer>): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((request, response) => {
    const data = files.get(basename(request.url ?? '/'));
    if (data) response.writeHead(200, { 'content-length': data.length }).end(data);
    else response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/images`;
  return { url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * `boxbuild --box leap --type oem -- --description D --target-dir T` on the fixture Leap box
 * (KIWI contract, Debian bzImage) under TCG, update check included: wall time, median of 5.
 */
export async function benchKiwi(env: NodeJS.ProcessEnv): Promise<string> {
  await execa(process.execPath, [CLI, 'box', 'fetch', 'debian', '--arch', 'x86_64', '-q'], { env });
  const { url, close } = await serveFixture(await fixtureFiles(await makeKiwiFixture(cacheRoot(env))));
  const work = await mkdtemp(join(tmpdir(), 'boxbuild-bench-kiwi-'));
  try {
    const registry = join(work, 'boxes.json');
    await writeFile(registry, fixtureRegistry(url));
    await mkdir(join(work, 'description'));
    const args = ['--box', 'leap', '--boxes', registry, '--accel', 'tcg', '-q', '--type', 'oem', '--', '--description', join(work, 'description'), '--target-dir', join(work, 'out')];
    await execa(process.execPath, [CLI, 'box', 'fetch', 'leap', '--boxes', registry, '-q'], { env });
    await timeCli(args, env); // the first run extracts the vmlinux
    const walls: number[] = [];
    for (let i = 0; i < RUNS; i++) walls.push((await timeCli(args, env)).wallSeconds);
    const range = `${seconds(Math.min(...walls))} - ${seconds(Math.max(...walls))}`;
    return table(['KIWI box (TCG)', 'what', `median of ${RUNS}`, 'range', 'target'], [['fixture leap x86_64', 'kiwi build wall', seconds(median(walls)), range, '<= 4.5 s']]);
  } finally {
    await close();
    await rm(work, { recursive: true, force: true });
  }
}
