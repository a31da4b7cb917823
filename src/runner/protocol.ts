import { randomBytes } from 'node:crypto';
import type { GuestMount } from '../sharing/types.js';

/** A terminal's size in character cells. */
export interface WindowSize {
  rows: number;
  cols: number;
}

/**
 * A terminal in the guest (a pseudo-terminal over the stdin and stdout ports): its starting size,
 * and what runs on it.
 */
export interface TerminalRequest extends WindowSize {
  /** The command runs on the terminal (-t). */
  command: boolean;
  /** A failed command is followed by a shell on the terminal, in the same VM (--debug-shell). */
  debugShell: boolean;
}

/** What the guest should do: mount the shares, then run argv in cwd with env. */
export interface GuestRequest {
  mounts: GuestMount[];
  cwd: string;
  env: Record<string, string>;
  argv: string[];
  /** The command reads what the host sends on the stdin port (or after the request, over SSH); else /dev/null. */
  stdin?: boolean;
  terminal?: TerminalRequest;
}

export interface OutputCounts {
  stdout: number;
  stderr: number;
}

export type GuestMessage =
  | { type: 'ready'; version: number }
  | { type: 'error'; message: string }
  /** The command's status, and how many bytes it wrote to the stdout and stderr ports. */
  | { type: 'exit'; status: number; output: OutputCounts }
  | { type: 'hostkey'; key: string }
  /** The command failed with this status; a debug shell now runs on the guest terminal. */
  | { type: 'shell'; status: number }
  | { type: 'unknown'; line: string };

/** base64, with "-" (not in the base64 alphabet) for the empty string so no field is ever blank. */
const b64 = (value: string) => (value === '' ? '-' : Buffer.from(value, 'utf8').toString('base64'));

/**
 * Makes the guest current before anything else: the host's clock (builds compare mtimes) and fresh
 * random bytes for the kernel's pool (guests restored from one saved state start out identical).
 */
function freshnessLines(restored: boolean): string[] {
  const seed = [...randomBytes(64)].map((byte) => `\\${byte.toString(8).padStart(3, '0')}`).join('');
  return [...(restored ? [`CLOCK ${Math.round(Date.now() / 1000)}\n`] : []), `SEED ${seed}\n`];
}

/** A value without a line break travels as it is (no decoding in the guest); any other as base64. */
const textOr64 = (verb: string, value: string) => (value.includes('\n') ? `${verb} ${b64(value)}\n` : `${verb}TEXT ${value}\n`);

/** Words of this size at most, without a line break, travel on the request's line (the agent reads a line a byte per system call). */
const WORDS_ON_LINE_MAX = 2048;

/**
 * Values as words the guest's shell takes apart in one eval, starting no process: each single-quoted
 * (nothing in it is expanded; a quote itself travels as '\''), space-separated. `VERBTEXT <words>` on
 * one line, or `VERB <n>` and n bytes (words with a line break, or many).
 */
function wordsRequest(verb: string, values: string[]): string {
  const words = values.map((value) => `'${value.replaceAll("'", "'\\''")}'`).join(' ');
  const size = Buffer.byteLength(words);
  return !words.includes('\n') && size <= WORDS_ON_LINE_MAX ? `${verb}TEXT ${words}\n` : `${verb} ${size}\n${words}`;
}

const mountLines = (mounts: GuestMount[]) => mounts.map((m) => wordsRequest('MOUNT', [m.fstype, m.source, m.target, m.options, m.modules.join(' ')]));

/** The command's arguments (none: the SSH channel's request has no command). */
const argvBlock = (argv: string[]) => (argv.length === 0 ? '' : wordsRequest('ARGV', argv));

/** The guest terminal's size and uses. */
function terminalLines(terminal?: TerminalRequest): string[] {
  if (!terminal) return [];
  return [`TERMINAL ${terminal.rows} ${terminal.cols}\n`, ...(terminal.command ? ['TTY\n'] : []), ...(terminal.debugShell ? ['DEBUGSHELL\n'] : [])];
}

/** A new size of the host terminal, for the guest's (sent while the command runs). */
export const encodeWindowSize = ({ rows, cols }: WindowSize) => `WINSZ ${rows} ${cols}\n`;

/** How the command runs: environment, directory, stdin and terminal. */
function settingRequests(command: Omit<GuestRequest, 'mounts' | 'argv'>): string[] {
  const env = Object.entries(command.env).map(([name, value]) => `${name}=${value}`);
  return [...(env.length > 0 ? [wordsRequest('ENV', env)] : []), textOr64('CWD', command.cwd), ...(command.stdin ? ['STDIN\n'] : []), ...terminalLines(command.terminal)];
}

/** The command part of a request (what the SSH channel sends over the SSH session). */
export function encodeCommand(command: Omit<GuestRequest, 'mounts'>): string {
  return [...settingRequests(command), argvBlock(command.argv), 'RUN\n'].join('');
}

/**
 * Encodes a request: lines of a verb and its fields, and words (every request complete: a line ends
 * with its line break, a block with its last byte), so that any byte
 * of an argument (spaces, quotes, newlines, `$(...)`, non-ASCII) reaches the guest unchanged.
 */
export function encodeRequest(request: GuestRequest, restored = false): string {
  return [...freshnessLines(restored), ...mountLines(request.mounts), encodeCommand(request)].join('');
}

/**
 * For the SSH channel: the mounts and the command's settings, then sshd with the run's key instead
 * of a command. The agent that started sshd forwards terminal sizes and runs the debug shell (in the
 * command's directory and environment); the SSH session runs the command.
 */
export function encodeSshdRequest(request: Omit<GuestRequest, 'argv'>, authorizedKey: string, restored = false): string {
  return [...freshnessLines(restored), ...mountLines(request.mounts), ...settingRequests({ ...request, stdin: false }), `SSHD ${b64(authorizedKey.trim())}\n`].join('');
}

export function parseGuestMessage(line: string): GuestMessage {
  const [verb, field] = line.trim().split(' ');
  if (verb === 'READY') return { type: 'ready', version: Number(field) };
  const exit = /^EXIT (\d+) (\d+) (\d+)$/.exec(line.trim());
  if (exit) return { type: 'exit', status: Number(exit[1]), output: { stdout: Number(exit[2]), stderr: Number(exit[3]) } };
  const shell = /^SHELL (\d+)$/.exec(line.trim());
  if (shell) return { type: 'shell', status: Number(shell[1]) };
  if (verb === 'HOSTKEY') return { type: 'hostkey', key: Buffer.from(field ?? '', 'base64').toString('utf8') };
  if (verb === 'ERROR') return { type: 'error', message: Buffer.from(field ?? '', 'base64').toString('utf8') };
  return { type: 'unknown', line };
}
