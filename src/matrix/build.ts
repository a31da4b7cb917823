import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { BoxbuildError, ExitCode } from '../errors.js';
import { Child } from '../util/child.js';
import { diesWithParent } from '../util/orphans.js';
import { hashFile } from '../box/hash.js';
import { VERSION } from '../version.js';
import type { BuildResult, BuildStatus, MatrixBuild } from './types.js';

/*
 * One build of a matrix: boxbuild's own command line run as a child process, so that a build runs
 * exactly as `boxbuild --box … -- …` would, in a VM of its own, and a crash of one build is its own.
 */

export interface RunBuildOptions {
  /** The build's directory: its log.txt (earlier attempts' log.1.txt, …), result.json and, unless the matrix names one, target/. */
  dir: string;
  /** Aborting stops the build (SIGTERM; boxbuild stops its VM and cleans up) and marks it cancelled. */
  signal?: AbortSignal;
  /** Where it runs: "local" (default) or a worker's name. */
  ranOn?: string;
  /** Added to this process's environment for boxbuild. */
  env?: NodeJS.ProcessEnv;
  /** Each line the build prints (stdout and stderr), as it comes. */
  onLine?: (line: string) => void;
}

/** dist/cli.js, from both src/matrix and dist/matrix. */
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const RESULT_FILE = 'result.json';
const TAIL_LINES = 30;
/** Longer lines reach onLine and the tail cut here (the log file keeps them whole). */
const MAX_LINE = 4096;
/** How long boxbuild may take to stop its VM after SIGTERM before it is killed. */
const STOP_GRACE_MS = 15_000;
/** More files than this in a target are not listed as artifacts. */
const MAX_ARTIFACTS = 10_000;
/** boxbuild's exit codes for its own failures, when no --result file tells them from the build's. */
const OWN_FAILURES = new Set<number>([ExitCode.usage, ExitCode.boxUnavailable, ExitCode.internal, ExitCode.vmFailed, ExitCode.ioError, ExitCode.guestLost]);

/** boxbuild's command line for a build (after `node`). */
export function buildArgv(build: MatrixBuild, dir: string): string[] {
  return [
    '--box', build.box,
    '--arch', build.arch,
    ...(build.registryFiles ?? []).flatMap((file) => ['--boxes', file]),
    ...(build.timeoutSeconds === undefined ? [] : ['--timeout', `${build.timeoutSeconds}s`]),
    '--result', join(dir, RESULT_FILE),
    '-q',
    '--',
    '--description', build.description,
    '--target-dir', targetOf(build, dir),
    ...build.args,
  ];
}

const targetOf = (build: MatrixBuild, dir: string) => build.target ?? join(dir, 'target');

/**
 * What an attempt became. The --result file tells boxbuild's own failures (its `error.kind`) from a
 * build that exits with one of boxbuild's codes; without it, the codes alone decide.
 */
export function statusOf(exitCode: number | undefined, aborted: boolean, result?: Record<string, unknown>): BuildStatus {
  if (exitCode === 0) return 'passed';
  if (aborted) return 'cancelled';
  if (result) {
    const kind = (result.error as { kind?: unknown } | undefined)?.kind;
    if (kind === undefined) return 'failed';
    return kind === 'timeout' ? 'timeout' : kind === 'interrupted' || kind === 'terminated' ? 'cancelled' : 'error';
  }
  if (exitCode === ExitCode.timeout) return 'timeout';
  if (exitCode === ExitCode.interrupted || exitCode === ExitCode.terminated) return 'cancelled';
  return exitCode === undefined || OWN_FAILURES.has(exitCode) ? 'error' : 'failed';
}

/** The result of a build that never ran (the matrix was stopped first). */
export function notRun(build: MatrixBuild, ranOn = 'local'): BuildResult {
  const { id, name, label, box, arch, tags } = build;
  return { id, name, label, box, arch, tags, status: 'cancelled', attempts: 0, startedAt: new Date().toISOString(), durationSeconds: 0, log: '', logTail: [], ranOn, artifacts: [] };
}

/** Splits chunks of one stream into lines (UTF-8 across chunks), each cut at MAX_LINE. */
class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';

  constructor(private readonly emit: (line: string) => void) {}

  push(chunk: Buffer): void {
    const lines = (this.partial + this.decoder.write(chunk)).split('\n');
    this.partial = lines.pop()!.slice(0, MAX_LINE);
    for (const line of lines) this.emit(line.slice(0, MAX_LINE));
  }

  end(): void {
    const rest = this.partial + this.decoder.end();
    if (rest) this.emit(rest.slice(0, MAX_LINE));
  }
}

interface Attempt {
  exitCode?: number;
  aborted: boolean;
  result?: Record<string, unknown>;
  tail: string[];
  /** The last `boxbuild: error:` line on stderr. */
  errorLine?: string;
}

/** One run of boxbuild: its output into `log`, stopped when `signal` aborts. */
async function attempt(argv: string[], files: { log: string; result: string }, options: RunBuildOptions): Promise<Attempt> {
  const { log } = files;
  const tail: string[] = [];
  let errorLine: string | undefined;
  const took = (line: string, stream: 'stdout' | 'stderr') => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    if (stream === 'stderr' && line.startsWith('boxbuild: error: ')) errorLine = line;
    options.onLine?.(line);
  };
  const file = createWriteStream(log);
  let logError: Error | undefined;
  // Killed with this process even when it dies without a word (a worker SIGKILLed: its job runs elsewhere).
  const [program, ...args] = diesWithParent([process.execPath, ...argv]);
  const child = new Child(program!, args, { collect: false, detached: true, env: { ...process.env, ...options.env } });
  file.on('error', (error) => {
    logError ??= error;
    void child.stop(STOP_GRACE_MS);
  });
  const pump = (stream: Readable | null, name: 'stdout' | 'stderr') => {
    const lines = new LineSplitter((line) => took(line, name));
    stream?.on('data', (chunk: Buffer) => {
      lines.push(chunk);
      // A slow disk holds the build back rather than boxbuild's memory.
      if (!logError && !file.write(chunk)) {
        stream.pause();
        file.once('drain', () => stream.resume());
      }
    });
    stream?.on('end', () => lines.end());
  };
  pump(child.process.stdout, 'stdout');
  pump(child.process.stderr, 'stderr');
  const stop = () => void child.stop(STOP_GRACE_MS);
  options.signal?.addEventListener('abort', stop, { once: true });
  const end = await child.ended;
  options.signal?.removeEventListener('abort', stop);
  await new Promise<void>((resolve) => file.end(resolve));
  if (logError) throw new BoxbuildError('ioError', `cannot write the build's log ${log}: ${logError.message}`, { cause: logError });
  if (end.startError) throw new BoxbuildError('internal', `cannot start boxbuild (${process.execPath} ${argv[0]}): ${end.startError.message}`, { cause: end.startError });
  return { exitCode: end.exitCode, aborted: options.signal?.aborted ?? false, result: await readResult(files.result), tail, errorLine };
}

/** The --result file boxbuild wrote (undefined when it wrote none, e.g. killed). */
async function readResult(file: string): Promise<Record<string, unknown> | undefined> {
  try {
    const value: unknown = JSON.parse(await readFile(file, 'utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The regular files under `target` (links and other special files left out: the guest made them), with their sha256. */
export async function listArtifacts(target: string): Promise<BuildResult['artifacts']> {
  const found: BuildResult['artifacts'] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (found.length >= MAX_ARTIFACTS) return;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const { size } = await lstat(path);
        found.push({ path: relative(target, path), size, sha256: await hashFile(path) });
      }
    }
  };
  await walk(target);
  return found;
}

/**
 * Runs one build of a matrix with boxbuild's CLI (this boxbuild's dist/cli.js), trying it again
 * `build.retries` times after a failure, and says what it became. Rejects only when the build's
 * directory or log cannot be written, or boxbuild cannot be started.
 */
export async function runBuild(build: MatrixBuild, options: RunBuildOptions): Promise<BuildResult> {
  return runBuildWith(CLI, build, options);
}

/** runBuild with another boxbuild CLI script (the tests' stand-in). */
export async function runBuildWith(cli: string, build: MatrixBuild, options: RunBuildOptions): Promise<BuildResult> {
  const { dir } = options;
  if (options.signal?.aborted) return notRun(build, options.ranOn);
  const startedAt = new Date();
  await mkdir(dir, { recursive: true });
  // What an earlier run of this build left (a target the matrix names is the user's: left alone).
  for (const name of await readdir(dir)) if (/^(log(\.\d+)?\.txt|result\.json)$/.test(name)) await rm(join(dir, name));
  const argv = [cli, ...buildArgv(build, dir)];
  const files = { log: join(dir, 'log.txt'), result: join(dir, RESULT_FILE) };
  let attempts = 0;
  let last: Attempt;
  let status: BuildStatus;
  for (;;) {
    if (build.target === undefined) await rm(join(dir, 'target'), { recursive: true, force: true });
    await rm(files.result, { force: true });
    last = await attempt(argv, files, options);
    attempts++;
    status = statusOf(last.exitCode, last.aborted, last.result);
    if (status === 'passed' || status === 'cancelled' || attempts > build.retries || options.signal?.aborted) break;
    await rename(files.log, join(dir, `log.${attempts}.txt`));
  }
  const message = (last.result?.error as { message?: unknown } | undefined)?.message;
  const error = typeof message === 'string' ? `boxbuild: error: ${message}` : status === 'error' || status === 'timeout' ? last.errorLine : undefined;
  const { id, name, label, box, arch, tags } = build;
  return {
    id, name, label, box, arch, tags, status,
    ...(last.exitCode === undefined ? {} : { exitCode: last.exitCode }),
    ...(error ? { error } : {}),
    attempts,
    startedAt: startedAt.toISOString(),
    durationSeconds: Number(((Date.now() - startedAt.getTime()) / 1000).toFixed(3)),
    log: files.log,
    logTail: last.tail,
    ...(last.result ? { provenance: { boxbuild: VERSION, ...last.result } } : {}),
    ranOn: options.ranOn ?? 'local',
    artifacts: await listArtifacts(targetOf(build, dir)),
  };
}
