import { Redis, type RedisOptions } from 'ioredis';
import { BoxbuildError, usageError } from '../../errors.js';

/** Where the queue is: what ioredis and BullMQ connect to, and the URL to show (without its password). */
export interface RedisTarget {
  connection: Pick<RedisOptions, 'host' | 'port' | 'username' | 'password' | 'db'>;
  shown: string;
}

const FORM = 'redis://[USER:PASSWORD@]HOST[:PORT][/DB]';

/** Checks a --queue URL before anything connects: redis://[USER:PASSWORD@]HOST[:PORT][/DB]. */
export function parseRedisUrl(text: string, option = '--queue'): RedisTarget {
  const refuse = (why: string) => usageError(`${option} ${JSON.stringify(text)}: ${why} (expected ${FORM})`);
  let url: URL;
  try {
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) throw new Error('no scheme'); // "host:6379" would parse, with "host" as the scheme
    url = new URL(text);
  } catch {
    throw refuse('not a URL');
  }
  if (url.protocol !== 'redis:') throw refuse(`the scheme is ${url.protocol.slice(0, -1)}, not redis`);
  if (!url.hostname) throw refuse('no host');
  if (url.search || url.hash) throw refuse('a query or fragment means nothing here');
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db)) throw refuse(`the database "${db}" is not a number`);
  const port = url.port === '' ? 6379 : Number(url.port);
  const decoded = (part: string) => (part ? decodeURIComponent(part) : undefined);
  const connection = {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    username: decoded(url.username),
    password: decoded(url.password),
    db: db === '' ? 0 : Number(db),
  };
  if (url.password) url.password = '***';
  return { connection, shown: url.href };
}

/** How long the first connection may take before the command gives up. */
export const CONNECT_TIMEOUT_MS = 5000;

/**
 * Connects and asks PING once, giving up after `timeoutMs`: ioredis (and BullMQ on it) would
 * otherwise retry forever, and a Redis that is down would hang the command instead of failing it.
 */
export async function checkRedis(target: RedisTarget, timeoutMs = CONNECT_TIMEOUT_MS): Promise<void> {
  const client = new Redis({ ...target.connection, lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  // The socket's own error (ECONNREFUSED…) comes as an event; the rejection then only says "Connection is closed".
  let socketError: Error | undefined;
  client.on('error', (error: Error) => (socketError ??= error));
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    const cause = socketError ?? (error as Error);
    throw new BoxbuildError('queueUnavailable', `cannot reach the queue at ${target.shown}: ${cause.message}`, { cause });
  } finally {
    // Not once the connection ended: ioredis would keep a 2 s timer for a socket that is already closed.
    if (client.status !== 'end') client.disconnect();
  }
}

/** Says a connection's trouble once (not at each reconnect attempt), and when it is over. */
export function connectionReporter(say: (line: string) => void): { error: (error: Error) => void; ready: () => void } {
  let last = '';
  return {
    error: (error) => {
      if (error.message !== last) say(`queue: ${(last = error.message)}`);
    },
    ready: () => {
      if (last) say('queue: connected again');
      last = '';
    },
  };
}

/**
 * A connection of our own (announcements, cancel and wake messages). Once the first connection
 * worked, it reconnects for as long as it takes (a Redis restart); commands wait meanwhile.
 */
export function openRedis(target: RedisTarget, reporter: ReturnType<typeof connectionReporter>): Redis {
  const client = new Redis({ ...target.connection, maxRetriesPerRequest: null });
  client.on('error', reporter.error);
  client.on('ready', reporter.ready);
  return client;
}
