import type { Writable } from 'node:stream';
import { formatBytes } from '../util/size.js';

/** Where download progress goes: a redrawn bar on a terminal, otherwise occasional lines through `log`. */
export interface ProgressOutput {
  /** The terminal for the bar (used only when it is a TTY). */
  stream?: Writable & { isTTY?: boolean; columns?: number };
  log: (line: string) => void;
  /** Seconds between plain lines (default 15). */
  lineIntervalS?: number;
}

export interface Progress {
  /** Bytes of the file that are on disk now (including resumed ones). */
  update(bytes: number): void;
  /** Ends the report: a final bar or line when `completed`, otherwise just ends the bar's line. */
  finish(completed: boolean): void;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const [h, m] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60)];
  const mmss = `${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}

/**
 * Reports the download of `label` (`total` bytes when known; `start` bytes were there already).
 * The rate counts only this run's bytes, so a resumed download shows its real speed and ETA.
 */
export function startProgress(output: ProgressOutput, label: string, total: number | undefined, start: number): Progress {
  const began = performance.now();
  let last = began;
  let shown = start;
  const tty = output.stream?.isTTY === true ? output.stream : undefined;
  const describe = (bytes: number) => {
    const seconds = (performance.now() - began) / 1000;
    const rate = seconds > 0 ? (bytes - start) / seconds : 0;
    const eta = total !== undefined && rate > 0 ? duration((total - bytes) / rate) : '--:--';
    const amount = total !== undefined ? `${formatBytes(bytes)} / ${formatBytes(total)}` : formatBytes(bytes);
    return { seconds, rate, eta, amount };
  };
  const bar = (bytes: number) => {
    const { rate, eta, amount } = describe(bytes);
    const columns = (tty!.columns ?? 100) - 1;
    const figures = `${amount}  ${formatBytes(rate)}/s  ETA ${eta}`;
    // The bar shrinks on a narrow terminal (down to 5, then none); the file name comes last and is what gets cut.
    const width = Math.min(20, columns - figures.length - 3);
    const filled = total ? Math.min(width, Math.floor((bytes / total) * width)) : 0;
    const line = `${width >= 5 ? `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ` : ''}${figures}  ${label}`;
    tty!.write(`\r${line.slice(0, columns)}\u001b[K`);
  };
  if (!tty) output.log(`downloading ${label}${total !== undefined ? ` (${formatBytes(total)})` : ''}${start > 0 ? `, resuming at ${formatBytes(start)}` : ''}`);
  return {
    update(bytes) {
      shown = bytes;
      const now = performance.now();
      // `last` is when something was drawn: an update too soon after it leaves it alone.
      if (now - last < (tty ? 100 : (output.lineIntervalS ?? 15) * 1000)) return;
      last = now;
      if (tty) bar(bytes);
      else {
        const { amount, rate, eta } = describe(bytes);
        output.log(`${label}: ${amount}, ${formatBytes(rate)}/s, ETA ${eta}`);
      }
    },
    finish(completed) {
      if (tty) {
        if (completed) bar(shown);
        tty.write('\n');
      } else if (completed) {
        const { seconds, rate } = describe(shown);
        output.log(`downloaded ${label} (${formatBytes(shown)} in ${seconds.toFixed(1)} s, ${formatBytes(rate)}/s)`);
      }
    },
  };
}
