import { BoxbuildError } from '../errors.js';
import { describeNetError } from './http.js';

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
