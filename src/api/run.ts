import { isAbsolute } from 'node:path';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import type { Arch } from '../box/arch.js';
import { cacheRoot, openCache } from '../box/cache.js';
import { usageError } from '../errors.js';
import { type NetworkWord, parseNetwork } from '../network/mode.js';
import { SETTINGS, describeSkipped, findConfigFiles, loadConfig } from '../config/config.js';
import type { AccelRequest } from '../qemu/accel.js';
import { shareSpec } from '../runner/args.js';
import { buildCommand, execCommand } from '../runner/commands.js';
import type { RunOptions } from '../runner/options.js';
import type { SharingChoice } from '../sharing/index.js';
import { parseDurationMs, parseMemoryMiB, parsePositiveInt } from '../util/size.js';

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
  /**
   * Run in a podman container of the box's root file system instead of a VM (system boxes and boxes
   * imported from root file systems; the host's architecture). `accel`, `sharing` and `cold` are for VMs.
   */
  container?: boolean;
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
  /**
   * Read the config files as the CLI does (`$XDG_CONFIG_HOME/boxbuild/config.json`, `.boxbuild.json`
   * from the current directory up) for what the request leaves out; default false.
   */
  config?: boolean;
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

/** A Writable that keeps what is written to it, and gives it line by line as it comes. */
class Collector extends Writable {
  private readonly chunks: Buffer[] = [];
  private ended = false;

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk);
    this.emit('changed');
    done();
  }

  override _final(done: () => void): void {
    this.ended = true;
    this.emit('changed');
    done();
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8').replace(/\r?\n$/, '');
  }

  /** Every line written, from the first, as it comes (without its line end); ends when the stream ends. */
  async *lines(): AsyncGenerator<string> {
    let read = 0;
    let partial = '';
    for (;;) {
      while (read < this.chunks.length) {
        const parts = (partial + this.chunks[read++]!.toString('utf8')).split('\n');
        partial = parts.pop() ?? '';
        for (const line of parts) yield line.replace(/\r$/, '');
      }
      if (this.ended) break;
      await once(this, 'changed');
    }
    if (partial) yield partial;
  }
}

/** A run under way: a promise of its result that can also be stopped and read line by line (as execa's subprocess). */
export interface RunHandle extends Promise<RunResult> {
  /**
   * Stops the run: the VM is stopped and the handle rejects with a BoxbuildError of kind
   * `interrupted` (exit code 130), or `terminated` (143) for SIGTERM.
   */
  kill(signal?: 'SIGINT' | 'SIGTERM'): void;
  /** The command's stdout line by line as it comes, from its first line (when `stdout` is not given; else nothing). */
  [Symbol.asyncIterator](): AsyncIterator<string>;
}

/** The config files' settings (as the CLI reads them) for what the request leaves out. */
function configured(request: VmRequest): Partial<RunOptions> {
  const { settings, skipped } = loadConfig(findConfigFiles(process.cwd()));
  for (const file of skipped) request.onNotice?.(describeSkipped(file));
  /** A setting's value (loadConfig checked it as the CLI does), parsed; undefined when no file sets it. */
  const value = <T>(name: keyof typeof SETTINGS, parse: (value: never, where: string) => T = (given) => given): T | undefined => {
    const setting = settings[name];
    return setting === undefined ? undefined : parse(setting.value as never, `${setting.from}: ${name}`);
  };
  return {
    arch: request.arch ?? value<Arch>('arch'),
    memoryMiB: request.memory === undefined ? value('memory', parseMemoryMiB) : undefined,
    cpus: request.cpus ?? value('cpus', parsePositiveInt),
    accel: request.accel ?? value<AccelRequest>('accel'),
    sharing: request.sharing ?? value<SharingChoice>('sharing'),
    network: request.network === undefined ? value('network', (network: NetworkWord | boolean, where) => parseNetwork(network, where)) : undefined,
    bootTimeoutMs: request.bootTimeout ?? value('bootTimeout', parseDurationMs),
    timeoutMs: request.timeout ?? value('timeout', parseDurationMs),
    registryFiles: [...(value<string[]>('registries') ?? []), ...(request.registries ?? [])],
  };
}

/** The run options a request gives (errors name the request's fields, not the CLI's options). */
function runOptions(request: VmRequest, streams: { stdout: Writable; stderr: Writable; stdin?: Readable; signal: AbortSignal }): RunOptions {
  const config = request.config ? configured(request) : {};
  const defined = Object.fromEntries(Object.entries(config).filter(([, value]) => value !== undefined));
  return {
    box: request.box,
    arch: request.arch,
    registryFiles: request.registries ?? [],
    cacheRoot: openCache(request.cacheDir ?? cacheRoot()),
    accel: request.accel ?? 'auto',
    memoryMiB: request.memory === undefined ? undefined : parseMemoryMiB(request.memory, 'memory'),
    cpus: request.cpus,
    sharing: request.sharing ?? '9p',
    bootTimeoutMs: request.bootTimeout ?? 60_000,
    timeoutMs: request.timeout,
    network: parseNetwork(request.network, 'network'),
    cold: request.cold,
    container: request.container,
    notice: request.onNotice ?? (() => {}),
    optionNames: LIBRARY_NAMES,
    ...defined,
    ...streams,
  };
}

/** What errors call the limits in a library run. */
const LIBRARY_NAMES = { timeout: 'timeout', bootTimeout: 'bootTimeout' };

/** Starts `start` with the run options a request gives; the handle collects the output it does not stream. */
function runWith(request: VmRequest, input: RunRequest['input'], start: (options: RunOptions) => Promise<number>): RunHandle {
  const stdout = request.stdout ?? new Collector();
  const stderr = request.stderr ?? new Collector();
  const stopping = new AbortController();
  const signal = request.signal ? AbortSignal.any([request.signal, stopping.signal]) : stopping.signal;
  const stdin = input === undefined ? undefined : input instanceof Readable ? input : Readable.from([Buffer.from(input)]);
  const text = (stream: Writable) => (stream instanceof Collector ? stream.text() : '');
  const result = (async (): Promise<RunResult> => {
    try {
      const exitCode = await start(runOptions(request, { stdout, stderr, stdin, signal }));
      return { exitCode, stdout: text(stdout), stderr: text(stderr) };
    } finally {
      for (const stream of [stdout, stderr]) if (stream instanceof Collector) stream.end();
    }
  })();
  return Object.assign(result, {
    kill: (how: 'SIGINT' | 'SIGTERM' = 'SIGINT') => stopping.abort(how),
    [Symbol.asyncIterator]: () => (stdout instanceof Collector ? stdout.lines() : (async function* () {})()),
  });
}

/**
 * Runs a command in a fresh VM of a box; the handle resolves with its exit status and output (a
 * non-zero status is a result, not an error) and rejects with a BoxbuildError when boxbuild itself
 * fails. `for await (const line of run(…))` reads its stdout as it comes; `kill()` stops it.
 */
export function run(request: RunRequest): RunHandle {
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
export function build(request: BuildRequest): RunHandle {
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
