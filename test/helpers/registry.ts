import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { access, constants, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO } from './env.js';
import { freePort } from './http.js';
import { type TokenRequest, startTokenServer } from './registry-token.js';
import { tempDir } from './temp.js';

/** Debian's docker-registry (distribution 2.8), unpacked by scripts/setup-debian without installing it. */
export const REGISTRY_BINARY = join(REPO, '.cache/tools/docker-registry');

/** A request as the registry's access log has it. */
export interface RegistryRequest {
  method: string;
  /** The request target: path and query. */
  path: string;
  status: number;
}

export interface TestRegistry {
  /** "127.0.0.1:PORT", what a reference to it starts with. */
  host: string;
  /** "http://127.0.0.1:PORT" */
  url: string;
  /** Its filesystem storage root. */
  storage: string;
  /** Where the bytes of a blob lie in the storage (to corrupt them in a test). */
  blobFile(digest: string): string;
  /** With token auth: the user and password the token server takes, and a containers auth file naming them. */
  auth?: {
    user: string;
    password: string;
    /** {"auths":{"127.0.0.1:PORT":{"auth":base64(user:password)}}}: podman's auth.json, docker's config.json. */
    authFile: string;
    /** Every request to the token server so far. */
    tokenRequests: TokenRequest[];
  };
  /** Every request the registry served so far, from its access log, in the order they ended. */
  requests(): Promise<RegistryRequest[]>;
  /** Ends the registry (and its token server); no process is left. */
  stop(): Promise<void>;
}

const START_ATTEMPTS = 3;
const STARTUP_TIMEOUT_MS = 30_000;
const KILL_AFTER_MS = 5000;
const STDERR_LINES = 20;
/** The request target of the requests() that tell how far the access log has been read. */
const LOG_MARK = '/v2/?boxbuild-log-mark=';

/** A docker-registry process and what it logged. */
interface RegistryProcess {
  child: ChildProcess;
  /** The last lines of its stderr (its own log), for error messages. */
  tail: string[];
  /** Its access log (stdout), parsed. */
  logged: RegistryRequest[];
  /** 'listening' once it serves, 'request' for each line of its access log. */
  events: EventEmitter;
  /** Settles once it ended and its output is read. */
  ended: Promise<void>;
}

function launch(configFile: string): RegistryProcess {
  // It inherits TMPDIR: a test file's leak check finds it if it was left running.
  const child = spawn(REGISTRY_BINARY, ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: RegistryProcess = { child, tail: [], logged: [], events: new EventEmitter(), ended: once(child, 'close').then(() => undefined) };
  createInterface({ input: child.stderr! }).on('line', (line) => {
    proc.tail.push(line);
    if (proc.tail.length > STDERR_LINES) proc.tail.shift();
    if (line.includes('msg="listening on ')) proc.events.emit('listening');
  });
  // Combined log format: 127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "referer" "agent"
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const match = /"(\S+) (\S+) HTTP\/[\d.]+" (\d{3}) /.exec(line);
    if (!match) return;
    const request = { method: match[1]!, path: match[2]!, status: Number(match[3]) };
    proc.logged.push(request);
    proc.events.emit('request', request);
  });
  return proc;
}

async function kill(proc: RegistryProcess): Promise<void> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), KILL_AFTER_MS);
    await proc.ended.finally(() => clearTimeout(timer));
  }
}

/** Waits until the registry listens and answers GET /v2/ with `expected`. */
async function waitReady(proc: RegistryProcess, url: string, expected: number): Promise<void> {
  const signal = AbortSignal.timeout(STARTUP_TIMEOUT_MS);
  await Promise.race([
    once(proc.events, 'listening', { signal }),
    proc.ended.then(() => {
      throw new Error(`it ended (exit code ${proc.child.exitCode}, signal ${proc.child.signalCode})`);
    }),
  ]);
  const response = await fetch(`${url}/v2/`, { signal });
  await response.body?.cancel();
  if (response.status !== expected) throw new Error(`GET /v2/ answered ${response.status}, not ${expected}`);
}

function registryConfig(port: number, storage: string, token?: object): string {
  const config = {
    version: '0.1',
    log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
    storage: {
      filesystem: { rootdirectory: storage },
      delete: { enabled: true },
      redirect: { disable: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret: 'boxbuild-test' },
    auth: token && { token },
  };
  return JSON.stringify(config, null, 2); // YAML is a superset of JSON
}

/**
 * Starts a real OCI registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1 with its
 * config, storage and logs in `dir` (a new temporary directory by default), plain HTTP, deletes
 * enabled, no redirects. With `tokenAuth` it is private: every request needs a bearer token from a
 * token server of its own (see registry-token.ts). Callers stop it in afterAll/afterEach.
 */
export async function startRegistry(options: { tokenAuth?: boolean; dir?: string } = {}): Promise<TestRegistry> {
  await access(REGISTRY_BINARY, constants.X_OK).catch((cause: unknown) => {
    throw new Error(`no docker-registry at ${REGISTRY_BINARY}: scripts/setup-debian unpacks it there`, { cause });
  });
  const dir = options.dir ?? tempDir('bb-registry-');
  await mkdir(dir, { recursive: true });
  const storage = join(dir, 'storage');
  const configFile = join(dir, 'config.yml');
  const token = options.tokenAuth ? await startTokenServer(dir) : undefined;
  let proc: RegistryProcess | undefined;
  let port = 0;
  try {
    for (let attempt = 1; !proc; attempt++) {
      port = await freePort();
      await writeFile(configFile, registryConfig(port, storage, token?.registryConfig));
      const started = launch(configFile);
      try {
        await waitReady(started, `http://127.0.0.1:${port}`, token ? 401 : 200);
        proc = started;
      } catch (cause) {
        await kill(started);
        // Another process took the free port before the registry bound it: try another.
        if (attempt < START_ATTEMPTS && started.tail.some((line) => line.includes('address already in use'))) continue;
        throw new Error(`docker-registry did not start: ${(cause as Error).message}; its last log lines:\n${started.tail.join('\n')}`, { cause });
      }
    }
  } catch (error) {
    await token?.stop();
    throw error;
  }

  const running = proc;
  const host = `127.0.0.1:${port}`;
  const url = `http://${host}`;
  let marks = 0;
  let auth: TestRegistry['auth'];
  if (token) {
    const authFile = join(dir, 'auth.json');
    const encoded = Buffer.from(`${token.user}:${token.password}`).toString('base64');
    await writeFile(authFile, `${JSON.stringify({ auths: { [host]: { auth: encoded } } })}\n`);
    auth = { user: token.user, password: token.password, authFile, tokenRequests: token.requests };
  }
  return {
    host,
    url,
    storage,
    auth,
    blobFile(digest) {
      const [algorithm, hex] = digest.split(':') as [string, string];
      return join(storage, 'docker/registry/v2/blobs', algorithm, hex.slice(0, 2), hex, 'data');
    },
    // A log line may reach us after its response: a request of our own, logged after all those
    // that ended before it, tells when the log is read far enough.
    async requests() {
      const mark = `${LOG_MARK}${++marks}`;
      const seen = new Promise<void>((resolve) => {
        const onRequest = (request: RegistryRequest) => {
          if (request.path !== mark) return;
          running.events.off('request', onRequest);
          resolve();
        };
        running.events.on('request', onRequest);
      });
      await (await fetch(`${url}${mark}`)).body?.cancel();
      await seen;
      return running.logged.filter((request) => !request.path.startsWith(LOG_MARK));
    },
    async stop() {
      await kill(running);
      await token?.stop();
    },
  };
}
