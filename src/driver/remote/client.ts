import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { BoxbuildError } from '../../errors.js';
import { type RunContext, inRun } from '../../runner/context.js';
import type { RunControl, RunIo } from '../../runner/options.js';
import { settledWithin } from '../../util/abort.js';
import type { Child } from '../../util/child.js';
import { formatBytes } from '../../util/size.js';
import { VERSION } from '../../version.js';
import { TargetWriter } from './extract.js';
import { ConnectionEnded, FRAME, type Frame, type FrameType, FrameReader, FrameWriter, type Hello, ProtocolError, type Request, type TargetEntry, dataFrames, parseJson } from './protocol.js';
import { type HostSpec, describeHost } from './host.js';
import { startSsh } from './ssh.js';
import { blobSources, listDescription } from './sync.js';

/*
 * The client of a --host run: one SSH session to `boxbuild remote-serve` on the build host. Ending
 * the session early (Ctrl-C, --timeout, a closed output) makes the server stop its build and VM;
 * the client waits a moment for that, as a local run waits for its VM to stop.
 */

/** How long the server may take to stop its build once the session is ended. */
const HANGUP_GRACE_MS = 20_000;
/** What ssh said last, for error messages. */
const STDERR_TAIL = 4096;

/** One SSH session to a build host, its hello exchanged. */
class Session {
  private sshStderr = '';
  readonly reader: FrameReader;
  readonly writer: FrameWriter;
  private greeted = false;

  private constructor(
    readonly host: string,
    private readonly ssh: Child,
    private readonly ctx: RunContext,
  ) {
    ssh.process.stderr!.on('data', (chunk: Buffer) => (this.sshStderr = (this.sshStderr + chunk.toString()).slice(-STDERR_TAIL)));
    ssh.process.stdin!.on('error', () => {}); // the session's end is told by its stdout
    this.reader = new FrameReader(ssh.process.stdout!);
    this.writer = new FrameWriter(ssh.process.stdin!);
  }

  static async open(spec: HostSpec, ctx: RunContext): Promise<Session> {
    const session = new Session(describeHost(spec), startSsh(spec), ctx);
    ctx.defer(() => session.close());
    const hello = await session.exchange(async () => {
      await session.writer.json(FRAME.hello, { version: VERSION } satisfies Hello);
      return parseJson<Hello>(await session.reader.expect(FRAME.hello));
    });
    if (hello.version !== VERSION) {
      throw new BoxbuildError('hostUnavailable', `the build host ${session.host} runs boxbuild ${hello.version}, this is ${VERSION}: install the same version on both`);
    }
    session.greeted = true;
    return session;
  }

  /** Runs a step of the protocol: the run's end, a lost connection or a broken protocol as one clear error. */
  async exchange<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await this.ctx.wait(step());
    } catch (error) {
      if (this.ctx.signal.aborted) throw this.ctx.signal.reason;
      if (error instanceof BoxbuildError) throw error;
      // ssh's last words, whichever end of the session noticed first (a write can fail before the read ends).
      await settledWithin(this.ssh.ended, 2000);
      const said = this.lastWords();
      if (!this.greeted) throw new BoxbuildError('hostUnavailable', `cannot start boxbuild on the build host ${this.host}: ${said || this.silentEnd(error)}`, { cause: error });
      if (error instanceof ProtocolError && !(error instanceof ConnectionEnded)) throw new BoxbuildError('hostLost', `refused what the build host ${this.host} sent: ${error.message}`, { cause: error });
      throw new BoxbuildError('hostLost', `lost the connection to the build host ${this.host}${said ? ` (${said})` : ''}; its boxbuild stops the remote VM`, { cause: error });
    }
  }

  /** The next frame of one of `types`; an error frame from the server becomes its message. */
  async expect(...types: FrameType[]): Promise<Frame> {
    const frame = await this.exchange(() => this.reader.expect(...types, FRAME.error));
    if (frame.type === FRAME.error) throw new BoxbuildError('hostLost', `the build host ${this.host} failed: ${parseJson<{ message: string }>(frame).message}`);
    return frame;
  }

  /** Why the hello did not come, when ssh said nothing. */
  private silentEnd(error: unknown): string {
    if (error instanceof ProtocolError && !(error instanceof ConnectionEnded)) return 'it answered, but not as boxbuild remote-serve does (does a start-up file of its shell print something?)';
    const { exitCode, signalCode } = this.ssh.process;
    return this.ssh.exited ? `ssh ended (${signalCode ?? `exit status ${exitCode}`}) without a word` : (error as Error).message;
  }

  private lastWords(): string {
    return this.sshStderr.trim().split('\n').filter(Boolean).pop()?.trim() ?? '';
  }

  /** Ends the session: the server stops what it runs and exits; ssh is stopped if it does not follow. */
  private async close(): Promise<void> {
    this.ssh.process.stdin!.end();
    // What the server still says is dropped: ssh ends when the server does.
    this.reader.drain();
    await settledWithin(this.ssh.ended, HANGUP_GRACE_MS);
    await this.ssh.stop();
  }
}

/** A target entry that cannot be written here (a full disk, a directory not writable): boxbuild's output failed. */
const unwritable = (entry: TargetEntry, error: unknown) =>
  new BoxbuildError('ioError', `cannot write ${entry.path} into the target directory: ${(error as Error).message}`, { cause: error });

/** The bytes of an entry that has none. */
async function* noData(): AsyncGenerator<Buffer> {}

/** Writes `chunk`, waiting while the stream's buffer is full. */
async function write(stream: Writable, chunk: Buffer): Promise<void> {
  if (!stream.write(chunk)) await once(stream, 'drain');
}

/**
 * Relays the server's output to `io` until its exit frame, writing target entries (if any) with
 * `target`; resolves with the exit status.
 */
async function relay(session: Session, io: Pick<RunIo, 'stdout' | 'stderr'>, ctx: RunContext, target?: TargetWriter): Promise<number> {
  for (;;) {
    const frame = await session.expect(FRAME.stdout, FRAME.stderr, FRAME.exit, ...(target ? [FRAME.entry] : []));
    if (frame.type === FRAME.stdout || frame.type === FRAME.stderr) await ctx.wait(write(frame.type === FRAME.stdout ? io.stdout : io.stderr, frame.payload));
    else if (frame.type === FRAME.entry) {
      const entry = parseJson<TargetEntry>(frame);
      const data = entry.type === 'file' ? dataFrames(session.reader, FRAME.entryData, FRAME.entryEnd) : noData();
      await session.exchange(() => target!.write(entry, data).catch((error: unknown) => Promise.reject(error instanceof ProtocolError ? error : unwritable(entry, error))));
    } else {
      const { code } = parseJson<{ code: unknown }>(frame);
      if (!Number.isInteger(code)) throw new BoxbuildError('hostLost', `the build host ${session.host} sent a bad exit status`);
      await target?.finish();
      return code as number;
    }
  }
}

export interface RemoteBuild {
  host: HostSpec;
  /** boxbuild's options for the build host (before `--`). */
  options: string[];
  /** The guest's --env variables, with their values. */
  env: Record<string, string>;
  /** The local description and target directory (real paths), and the other build arguments. */
  description: string;
  targetDir: string;
  rest: string[];
}

/** Runs a build on a build host: the description goes there, the output and the target come back. */
export function runRemoteBuild(io: RunIo & RunControl, build: RemoteBuild): Promise<number> {
  return inRun(io, async (ctx) => {
    ctx.enter(`connecting to ${describeHost(build.host)}`);
    const session = await Session.open(build.host, ctx);
    ctx.enter(`sending the description to ${session.host}`);
    const manifest = await listDescription(build.description);
    const request: Request = { kind: 'build', options: build.options, env: build.env, rest: build.rest, manifest };
    const wanted = await session.exchange(async () => {
      await session.writer.json(FRAME.request, request);
      return parseJson<{ hashes: string[] }>(await session.expect(FRAME.want)).hashes;
    });
    const sources = blobSources(build.description, manifest);
    let bytes = 0;
    await session.exchange(async () => {
      for (const hash of wanted) {
        const source = sources.get(hash);
        if (!source) throw new ProtocolError(`content ${hash} is not in the description`);
        await session.writer.send(FRAME.blobStart, hash);
        await session.writer.stream(FRAME.blobData, createReadStream(source.file));
        await session.writer.send(FRAME.blobEnd);
        bytes += source.size;
      }
    });
    ctx.detail(`sent ${wanted.length} of ${sources.size} files (${formatBytes(bytes)}) to ${session.host}`);
    ctx.enter(`running the build on ${session.host}`);
    ctx.vmRuns();
    const target = new TargetWriter(build.targetDir);
    const code = await relay(session, io, ctx, target);
    ctx.detail(`received ${target.files} files (${formatBytes(target.bytes)}) of the target directory from ${session.host}`);
    return code;
  });
}

/** `boxbuild doctor --host`: the build host's doctor, after the version check; resolves with its status. */
export function remoteDoctor(io: RunIo & RunControl, host: HostSpec, json: boolean): Promise<number> {
  return inRun(io, async (ctx) => {
    const session = await Session.open(host, ctx);
    if (!json) await write(io.stdout, Buffer.from(`ok      build host ${session.host}  boxbuild ${VERSION}, as here\n`));
    await session.exchange(() => session.writer.json(FRAME.request, { kind: 'doctor', json } satisfies Request));
    return relay(session, io, ctx);
  });
}
