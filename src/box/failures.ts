import { BoxbuildError } from '../errors.js';

/** The error of work stopped by Ctrl-C or SIGTERM (exit 130 or 143), saying what became of it. */
export function stoppedError(signal: AbortSignal, what: string): BoxbuildError {
  const kind = signal.reason === 'SIGTERM' ? 'terminated' : 'interrupted';
  return new BoxbuildError(kind, `${kind}; ${what}`);
}

/** One line about any failure of making or downloading a box: a full disk, a failed tool, a network error. */
export function describeFailure(error: unknown): string {
  const { code, shortMessage } = (error ?? {}) as { code?: string; shortMessage?: string };
  if (code === 'ENOSPC') return 'no space left on device in the box cache (free some, e.g. with "boxbuild box prune")';
  if (shortMessage) return shortMessage.split('\n')[0]!;
  return describeNetError(error).split('\n')[0]!;
}

/** got's errors, told by their shape: this module does not load got. */
const isRequestError = (error: unknown): error is Error & { code?: string } => error instanceof Error && 'timings' in error && 'options' in error;

/** One line about a failed request: "HTTP 404 Not Found", "timed out (no data for 30 s)", "ECONNREFUSED". */
export function describeNetError(error: unknown): string {
  if (isRequestError(error)) {
    if (error.code === 'ETIMEDOUT') return `timed out (${error.message.replace(/^Timeout awaiting '(\w+)' for (\d+)ms$/, (_, event: string, ms: string) => `${event === 'connect' ? 'no connection' : 'no data'} for ${Number(ms) / 1000} s`)})`;
    return error.code && !error.message.includes(error.code) ? `${error.message} (${error.code})` : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}
