import { spawnSync } from 'node:child_process';
import type { Writable } from 'node:stream';
import type { ReadStream, WriteStream } from 'node:tty';
import type { WindowSize } from './protocol.js';

/*
 * The user's terminal, lent to a pseudo-terminal in the guest (-t, shell, --debug-shell): raw while
 * lent, so that every key (Ctrl-C too) reaches the guest, with its size followed. As in ssh,
 * Enter ~ . ends the run.
 */

/** boxbuild's stdin when it is a terminal, the output the guest terminal is shown on, and boxbuild's own messages. */
export interface HostTerminal {
  input: ReadStream;
  output: NodeJS.WritableStream & Partial<Pick<WriteStream, 'isTTY' | 'rows' | 'columns' | 'on' | 'off'>>;
  messages: NodeJS.WritableStream;
}

/** The terminal boxbuild runs in, or undefined when its stdin is not one. */
export function hostTerminal(): HostTerminal | undefined {
  return process.stdin.isTTY ? { input: process.stdin, output: process.stdout, messages: process.stderr } : undefined;
}

/** The terminal's size; 24 x 80 when the output is not a terminal (its size is unknown then). */
export function windowSize({ output }: HostTerminal): WindowSize {
  return output.isTTY && output.rows && output.columns ? { rows: output.rows, cols: output.columns } : { rows: 24, cols: 80 };
}

/** Watches typed bytes for Enter ~ . (ssh's escape): true once it has been typed. */
export function escapeWatcher(): (chunk: Buffer) => boolean {
  // 0: at a line's start; 1: after ~ at a line's start; 2: elsewhere in a line.
  let state = 0;
  return (chunk) => {
    for (const byte of chunk) {
      if (state === 1 && byte === 0x2e) return true;
      state = byte === 0x0d || byte === 0x0a ? 0 : state === 0 && byte === 0x7e ? 1 : 2;
    }
    return false;
  };
}

/** A terminal lent to the guest: what is typed goes to `typeInto`'s stream; `giveBack` ends the loan. */
export interface LentTerminal {
  typeInto(keys: Writable): void;
  giveBack(): void;
}

/**
 * Lends the terminal: raw mode, each new size to `resized`, `escaped` called on Enter ~ . (echoed
 * with a line end, as ssh does, so that what boxbuild says next starts a line even when the guest's
 * output stopped mid-line). The returned loan's giveBack() restores it as it was (Node resets the
 * mode on any other way out).
 */
export function lendTerminal(terminal: HostTerminal, on: { resized: (size: WindowSize) => void; escaped: () => void }): LentTerminal {
  const { input, output, messages } = terminal;
  const wasRaw = input.isRaw;
  const escape = escapeWatcher();
  let keys: Writable | undefined;
  const typed = (chunk: Buffer) => {
    if (!escape(chunk)) return void keys?.write(chunk);
    messages.write('~.\r\n');
    on.escaped();
  };
  const resize = () => on.resized(windowSize(terminal));
  input.setRawMode(true);
  // Node's raw mode keeps output processing (\n becomes \r\n); the guest's pseudo-terminal does that itself.
  spawnSync('stty', ['-opost'], { stdio: [input, 'ignore', 'ignore'] });
  input.on('data', typed);
  input.resume();
  output.on?.('resize', resize);
  return {
    typeInto: (stream) => (keys = stream),
    giveBack: () => {
      output.off?.('resize', resize);
      input.off('data', typed);
      input.pause();
      input.setRawMode(wasRaw);
    },
  };
}

/**
 * Lends the terminal at the first call (keys typed into the stream given then, or into the one of a
 * later call) and registers its return with `ctx`: one loan per run, given back on every path.
 */
export function terminalLender(ctx: { defer(undo: () => unknown): void }, terminal: HostTerminal, on: Parameters<typeof lendTerminal>[1]): (keys: Writable) => void {
  let lent: LentTerminal | undefined;
  return (keys) => {
    if (!lent) {
      const loan = (lent = lendTerminal(terminal, on));
      ctx.defer(() => loan.giveBack());
    }
    lent.typeInto(keys);
  };
}
