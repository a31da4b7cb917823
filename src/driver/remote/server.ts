import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { cacheRoot, openCache } from '../../box/cache.js';
import { Child } from '../../util/child.js';
import { CleanupStack } from '../../util/cleanup.js';
import { markRunDir } from '../../util/run-dirs.js';
import { VERSION } from '../../version.js';
import { FRAME, type FrameType, FrameReader, FrameWriter, type Hello, ProtocolError, type Request, dataFrames, parseJson } from './protocol.js';
import { BlobStore, checkManifest } from './sync.js';

/*
 * `boxbuild remote-serve`: the build host's end of a --host run, started by its sshd for one SSH
 * session. It runs the build as a child process of its own CLI (the same command line, with a
 * description made from the blobs it keeps and a target of its own), streams the output, sends the
 * target back and then the exit status. When the session ends early (the client went, Ctrl-C,
 * a dropped connection, SIGHUP or SIGTERM) the build is stopped with SIGTERM, which stops its VM.
 */

const CLI = fileURLToPath(new URL('../../cli.js', import.meta.url));
/** How long a stopped build may take to stop its VM before it is killed. */
const STOP_GRACE_MS = 20_000;

/** Serves one session on `input`/`output` (the SSH session's stdin and stdout); `signal` aborts on SIGHUP/SIGTERM. */
export async function serve(input: Readable, output: Writable, signal: AbortSignal): Promise<number> {
  const writer = new FrameWriter(output, signal);
  const reader = new FrameReader(input);
  const cleanup = new CleanupStack();
  try {
    await writer.json(FRAME.hello, { version: VERSION } satisfies Hello);
    const hello = parseJson<Hello>(await reader.expect(FRAME.hello));
    if (hello.version !== VERSION) throw new ProtocolError(`this build host runs boxbuild ${VERSION}, the client ${hello.version}`);
    const request = parseJson<Request>(await reader.expect(FRAME.request));
    let args: string[];
    let target: string | undefined;
    let childEnv = process.env;
    if (request.kind === 'doctor') args = ['doctor', ...(request.json ? ['--json'] : [])];
    else if (request.kind === 'build') {
      const run = await runDirectory(cleanup);
      await receiveDescription(reader, writer, request.manifest, join(run, 'description'));
      target = join(run, 'target');
      await mkdir(target);
      const env = guestEnv(request.env);
      args = [...strings(request.options), ...env.args, '--', '--description', join(run, 'description'), '--target-dir', target, ...strings(request.rest)];
      childEnv = { ...process.env, ...env.inherited };
    } else throw new ProtocolError('unknown request');
    // From now on the client only listens: its end of the session (EOF, or anything at all) ends the run.
    const ended = AbortSignal.any([signal, hangup(reader)]);
    const code = await runChild(args, childEnv, writer, ended, cleanup);
    if (target) await sendTarget(writer, target);
    await writer.json(FRAME.exit, { code });
    return 0;
  } catch (error) {
    if (!signal.aborted) await writer.json(FRAME.error, { message: (error as Error).message }).catch(() => {});
    return 1;
  } finally {
    await cleanup.unwind().catch(() => {});
    output.end();
  }
}

const strings = (value: unknown): string[] => {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw new ProtocolError('bad request');
  return value as string[];
};

/** Variables boxbuild (or Node.js) itself reads: these cannot be handed to the build through its environment. */
const OWN_VARIABLES = /^(PATH|HOME|TMPDIR|USER|LOGNAME|SHELL|TERM|TZ|LANG|LANGUAGE|LC_\w+|NODE_\w+|LD_\w+|BOXBUILD_\w+|XDG_\w+|\w*_PROXY)$/i;

/**
 * The guest's variables as the build's options and environment: `--env NAME` with the value in the
 * build's environment, so that it is not on a command line the build host's other users see; but
 * for variables boxbuild itself reads, which go as `--env NAME=VALUE`.
 */
function guestEnv(variables: unknown): { args: string[]; inherited: Record<string, string> } {
  if (typeof variables !== 'object' || variables === null) throw new ProtocolError('bad request');
  const args: string[] = [];
  const inherited: Record<string, string> = {};
  for (const [name, value] of Object.entries(variables)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || typeof value !== 'string') throw new ProtocolError('bad request');
    if (OWN_VARIABLES.test(name)) args.push(`--env=${name}=${value}`);
    else {
      args.push(`--env=${name}`);
      inherited[name] = value;
    }
  }
  return { args, inherited };
}

/** A private directory for one run, removed at its end (or by a later run's sweep, see util/run-dirs). */
async function runDirectory(cleanup: CleanupStack): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'boxbuild-remote-'));
  cleanup.defer(() => rm(dir, { recursive: true, force: true }));
  await markRunDir(dir);
  return dir;
}

/** Takes the manifest's missing contents and makes the description in `dir`. */
async function receiveDescription(reader: FrameReader, writer: FrameWriter, manifest: unknown, dir: string): Promise<void> {
  const entries = checkManifest(manifest);
  const store = await new BlobStore(join(openCache(cacheRoot()), 'remote', 'blobs')).open();
  const wanted = await store.missing(entries);
  await writer.json(FRAME.want, { hashes: wanted });
  const pending = new Set(wanted);
  while (pending.size > 0) {
    const hash = (await reader.expect(FRAME.blobStart)).payload.toString();
    if (!pending.delete(hash)) throw new ProtocolError(`content ${hash} was not asked for`);
    await store.receive(hash, dataFrames(reader, FRAME.blobData, FRAME.blobEnd));
  }
  await mkdir(dir);
  await store.materialise(entries, dir);
}

/** Aborts once the client's end of the session closes, or it sends anything more. */
function hangup(reader: FrameReader): AbortSignal {
  const controller = new AbortController();
  reader.next().then(
    () => controller.abort(),
    () => controller.abort(),
  );
  return controller.signal;
}

/** Runs this boxbuild with `args`, its output sent as frames; its exit status (128 + N for signal N). */
async function runChild(args: string[], env: NodeJS.ProcessEnv, writer: FrameWriter, signal: AbortSignal, cleanup: CleanupStack): Promise<number> {
  const child = new Child(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], collect: false, env });
  cleanup.defer(() => child.stop(STOP_GRACE_MS));
  const stop = () => void child.stop(STOP_GRACE_MS);
  signal.addEventListener('abort', stop, { once: true });
  const pump = async (stream: Readable | null, type: FrameType) => {
    for await (const chunk of stream!) await writer.send(type, chunk as Buffer);
  };
  try {
    await Promise.all([pump(child.process.stdout, FRAME.stdout), pump(child.process.stderr, FRAME.stderr)]);
    const end = await child.ended;
    if (signal.aborted) throw new Error('the session ended');
    if (end.startError) throw end.startError;
    return end.exitCode ?? 128 + (end.signal ? constants.signals[end.signal] : 0);
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

/** Sends the target directory: directories before their entries, files with their bytes; links as links. */
async function sendTarget(writer: FrameWriter, root: string, prefix = ''): Promise<void> {
  for (const name of (await readdir(join(root, prefix))).sort()) {
    const path = prefix ? `${prefix}/${name}` : name;
    const full = join(root, path);
    const info = await lstat(full);
    const mode = info.mode & 0o777;
    if (info.isDirectory()) {
      await writer.json(FRAME.entry, { path, type: 'dir', mode });
      await sendTarget(writer, root, path);
    } else if (info.isSymbolicLink()) await writer.json(FRAME.entry, { path, type: 'symlink', mode, target: await readlink(full) });
    else if (info.isFile()) {
      await writer.json(FRAME.entry, { path, type: 'file', mode });
      await writer.stream(FRAME.entryData, createReadStream(full));
      await writer.send(FRAME.entryEnd);
    }
    // Sockets and fifos a build left stay on the host.
  }
}
