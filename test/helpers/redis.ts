import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { REPO } from './env.js';
import { freePort } from './http.js';
import { tempDir } from './temp.js';

/**
 * The redis binary of Debian's redis-tools, which runs as a server when called redis-server:
 * scripts/setup-debian links it here (the redis-server package would start a system service).
 */
export const REDIS_SERVER = join(REPO, '.cache/tools/redis-server');

export interface TestRedis {
  port: number;
  /** "redis://127.0.0.1:PORT" */
  url: string;
  /** A client of the test's own (closed by stop). */
  client: Redis;
  /** Ends the server; no process is left. */
  stop(): Promise<void>;
}

const START_ATTEMPTS = 3;
const STARTUP_TIMEOUT_MS = 20_000;

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const ended = once(child, 'exit');
  child.kill('SIGKILL'); // nothing of it is kept (--save '', no AOF)
  await ended;
}

/** Waits until the server answers PING, or throws with the last lines it printed. */
async function waitForPing(child: ChildProcess, port: number, output: () => string): Promise<Redis> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server ended (exit code ${child.exitCode}):\n${output()}`);
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return client;
    } catch {
      if (client.status !== 'end') client.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING within ${STARTUP_TIMEOUT_MS / 1000} s:\n${output()}`);
    await sleep(100);
  }
}

/**
 * Starts a throwaway Redis on 127.0.0.1 (a free port, nothing saved, its directory a temporary
 * one), and waits until it answers PING. Callers stop it in afterAll.
 */
export async function startRedis(): Promise<TestRedis> {
  await access(REDIS_SERVER, constants.X_OK).catch((cause: unknown) => {
    throw new Error(`no redis-server at ${REDIS_SERVER}: scripts/setup-debian links it there (package redis-tools)`, { cause });
  });
  const dir = tempDir('bb-redis-');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    // It inherits TMPDIR: a test file's leak check finds it if it was left running.
    const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    try {
      const client = await waitForPing(child, port, () => output);
      return {
        port,
        url: `redis://127.0.0.1:${port}`,
        client,
        async stop() {
          client.disconnect();
          await stopProcess(child);
        },
      };
    } catch (error) {
      await stopProcess(child);
      // Another process took the free port before redis bound it: try another.
      if (attempt < START_ATTEMPTS && output.includes('Address already in use')) continue;
      throw error;
    }
  }
}
