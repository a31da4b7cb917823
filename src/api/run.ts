import { isAbsolute } from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { Arch } from '../box/arch.js';
import { cacheRoot, openCache } from '../box/cache.js';
import { usageError } from '../errors.js';
import { type NetworkWord, parseNetwork } from '../network/mode.js';
import type { AccelRequest } from '../qemu/accel.js';
import { shareSpec } from '../runner/args.js';
import { buildCommand, execCommand } from '../runner/commands.js';
import type { RunOptions } from '../runner/options.js';
import type { SharingChoice } from '../sharing/index.js';
import { parseMemoryMiB } from '../util/size.js';

/** How the VM is set up: what the command-line options of the same names do. */
export interface VmRequest {
  /** The box to boot (see `boxbuild box list`). */
  box: string;
  /** Guest architecture; default: the host's. */
  arch?: Arch;
  /** Guest memory: `2G`, `512M`; default: the box's. */
  memory?: string;
  cpus?: number;
  /** Default `auto`: KVM when it really works, else TCG. */
  accel?: AccelRequest;
  /** Default `9p`. */
  sharing?: SharingChoice;
  /**
   * What the guest reaches, as --network says it: `'filtered'` (the default, also `true`), `'full'`,
   * `'none'` (also `false`), `'allow=HOST:PORT'` words (a list for several).
   */
  network?: boolean | NetworkWord | NetworkWord[];
  /** Boot even when a saved state exists. */
  cold?: boolean;
  /** Kill the VM after this many milliseconds. */
  timeout?: number;
  /** Give up when the guest is not ready after this many milliseconds; default 60000. */
  bootTimeout?: number;
  /** The box cache; default `$BOXBUILD_CACHE_DIR`, else `~/.cache/boxbuild`. */
  cacheDir?: string;
  /** Extra box registry files. */
  registries?: string[];
  /** Variables set in the guest. */
  env?: Record<string, string>;
  /** Ends the run: the VM is stopped and the promise rejects with a BoxbuildError (exit code 130). */
  signal?: AbortSignal;
  /** Where the command's output goes; when absent it is collected into the result. */
  stdout?: Writable;
  stderr?: Writable;
  /** What the CLI would print as `boxbuild: …` notices (box downloads, fallbacks); default: nothing. */
  onNotice?: (line: string) => void;
}

/** A host directory made visible in the guest. */
export interface ShareRequest {
  host: string;
  /** Default: the host path. */
  guest?: string;
  readOnly?: boolean;
}

export interface RunRequest extends VmRequest {
  /** The command and its arguments, passed byte-exact (no shell). */
  argv: string[];
  shares?: ShareRequest[];
  /** The guest directory it runs in; default: the guest path of the current directory when that is shared, else `/`. */
  cwd?: string;
  /** The command's stdin; default: empty. */
  input?: string | Uint8Array | Readable;
}

export interface BuildRequest extends VmRequest {
  /** Shared read-only at /description. */
  description: string;
  /** Shared read-write at /target; created when missing. */
  targetDir: string;
  /** More arguments for the box's build program (KIWI boxes: kiwi's own). */
  args?: string[];
  /** KIWI boxes: the image type and profiles to build (kiwi's --type and --profile). */
  kiwi?: { type?: string; profiles?: string[] };
}

export interface RunResult {
  /** The command's exit status. */
  exitCode: number;
  /** Its output, when not streamed elsewhere (one trailing newline taken off, as execa does). */
  stdout: string;
  stderr: string;
}

/** A Writable that keeps what is written to it. */
class Collector extends Writable {
  private readonly chunks: Buffer[] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk);
    done();
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8').replace(/\r?\n$/, '');
  }
}

/** Runs `start` with the run options a request gives, and collects the output it did not stream. */
async function runWith(request: VmRequest, input: RunRequest['input'], start: (options: RunOptions) => Promise<number>): Promise<RunResult> {
  const stdout = request.stdout ?? new Collector();
  const stderr = request.stderr ?? new Collector();
  const options: RunOptions = {
    box: request.box,
    arch: request.arch,
    registryFiles: request.registries ?? [],
    cacheRoot: openCache(request.cacheDir ?? cacheRoot()),
    accel: request.accel ?? 'auto',
    memoryMiB: request.memory === undefined ? undefined : parseMemoryMiB(request.memory),
    cpus: request.cpus,
    sharing: request.sharing ?? '9p',
    bootTimeoutMs: request.bootTimeout ?? 60_000,
    timeoutMs: request.timeout,
    network: parseNetwork(request.network, 'network'),
    cold: request.cold,
    stdin: input === undefined ? undefined : input instanceof Readable ? input : Readable.from([Buffer.from(input)]),
    stdout,
    stderr,
    notice: request.onNotice ?? (() => {}),
    signal: request.signal,
  };
  const exitCode = await start(options);
  const text = (stream: Writable) => (stream instanceof Collector ? stream.text() : '');
  return { exitCode, stdout: text(stdout), stderr: text(stderr) };
}

/**
 * Runs a command in a fresh VM of a box and resolves with its exit status and output (a non-zero
 * status is a result, not an error). Rejects with a BoxbuildError when boxbuild itself fails.
 */
export function run(request: RunRequest): Promise<RunResult> {
  return runWith(request, request.input, async (options) => {
    const { runInBox } = await import('../runner/agent.js');
    return runInBox(options, () => {
      const shares = (request.shares ?? []).map((share) => shareSpec(share.host, share.guest, share.readOnly ?? false));
      if (request.cwd !== undefined && !isAbsolute(request.cwd)) throw usageError(`cwd "${request.cwd}" must be an absolute guest path`);
      const command = { ...execCommand(shares, request.argv, process.cwd()), env: request.env };
      return request.cwd === undefined ? command : { ...command, cwd: request.cwd };
    });
  });
}

/**
 * Runs the box's build program on a description, into a target directory, as
 * `boxbuild --box B -- --description D --target-dir T` does; for a KIWI box, a kiwi build.
 */
export function build(request: BuildRequest): Promise<RunResult> {
  const args = ['--description', request.description, '--target-dir', request.targetDir, ...(request.args ?? [])];
  return runWith(request, undefined, async (options) => {
    const { lookupBox } = await import('../runner/stages.js');
    const { box, arch } = lookupBox(options);
    if (box.protocol === 'kiwi') {
      if (request.env) throw usageError(`env: box "${box.name}" follows the KIWI box contract, which takes no environment`);
      const { runKiwiBox } = await import('../runner/kiwi.js');
      return runKiwiBox(options, box, arch, { buildArgs: args, globals: { type: request.kiwi?.type, profiles: request.kiwi?.profiles } });
    }
    const { runInBox } = await import('../runner/agent.js');
    return runInBox(options, () => ({ ...buildCommand(box, args), env: request.env }));
  });
}
