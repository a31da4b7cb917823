import { execa } from 'execa';
import { stoppedError } from '../box/failures.js';
import { BoxbuildError } from '../errors.js';

export interface ToolOptions {
  /** Stops the tool and everything it started (Ctrl-C, SIGTERM). */
  signal?: AbortSignal;
  cwd?: string;
  env?: Record<string, string>;
}

/** What a tool did: its output as text, and whether it failed (non-zero status, killed, or not found). */
export interface ToolResult {
  failed: boolean;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved. */
  all: string;
  /** How it failed, e.g. "Command failed with exit code 100: apt-get download ...". */
  shortMessage?: string;
}

/** The PATH box making runs its tools with: the sbin directories too (depmod, debootstrap, mkfs.ext4). */
const toolPath = () => `/usr/sbin:/sbin:${process.env.PATH}`;

/**
 * Runs one tool of box making (apt-get, dpkg-deb, debootstrap, ...) without failing on its exit
 * status. It runs in a process group of its own, which the signal kills whole, so that no
 * grandchild (debootstrap's dpkg, apt-get's download methods) outlives an interrupted make.
 */
export async function runTool(file: string, args: string[], options: ToolOptions = {}): Promise<ToolResult> {
  const { signal } = options;
  if (signal?.aborted) throw stoppedError(signal, `${file} was not started`);
  const child = execa(file, args, { reject: false, all: true, stdin: 'ignore', detached: true, cwd: options.cwd, env: { ...options.env, PATH: toolPath() } });
  const killGroup = () => {
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  signal?.addEventListener('abort', killGroup, { once: true });
  try {
    const result = await child;
    if (signal?.aborted) throw stoppedError(signal, `${file} was stopped and the box was not made`);
    const { failed, stdout, stderr, all, shortMessage } = result;
    return { failed, stdout: String(stdout), stderr: String(stderr), all: String(all), shortMessage: failed ? shortMessage : undefined };
  } finally {
    signal?.removeEventListener('abort', killGroup);
  }
}

/** The last lines a failed tool printed, as one line. */
function lastLines(result: ToolResult, count = 3): string {
  const text = result.all.trim() || result.shortMessage || 'no output';
  return text.split('\n').slice(-count).join(' / ');
}

/** Runs a tool that must succeed: a failure is one line (exit 69) saying what failed and its last output. */
export async function mustRun(what: string, file: string, args: string[], options: ToolOptions = {}): Promise<ToolResult> {
  const result = await runTool(file, args, options);
  if (result.failed) throw new BoxbuildError('boxUnavailable', `${what} failed: ${lastLines(result)}`);
  return result;
}
