import { execa } from 'execa';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The median wall time of `runs` runs of `run`, in seconds. */
export async function medianWall(runs: number, run: () => Promise<unknown>): Promise<number> {
  const walls: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    await run();
    walls.push(Number(process.hrtime.bigint() - started) / 1e9);
  }
  return median(walls);
}

export interface CliTiming {
  wallSeconds: number;
  /** From QEMU's start to the guest agent's READY, as boxbuild --verbose reports it. */
  readySeconds: number;
  /** From boxbuild's start to QEMU's (--verbose). */
  spawnSeconds: number;
  /** The largest resident set of boxbuild and its children (QEMU), in bytes, when /usr/bin/time is there. */
  peakRssBytes: number;
}

const GNU_TIME = '/usr/bin/time';
let gnuTime: boolean | undefined;

/** Runs the boxbuild CLI once with --verbose and reads its timings. */
export async function timeCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliTiming> {
  gnuTime ??= (await execa(GNU_TIME, ['-f', '%M', 'true'], { reject: false })).exitCode === 0;
  const command = [process.execPath, CLI, ...args];
  const started = process.hrtime.bigint();
  const result = await execa(gnuTime ? GNU_TIME : command[0]!, gnuTime ? ['-f', 'peak-rss-kb %M', ...command] : command.slice(1), { env, reject: false, stdin: 'ignore' });
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.exitCode !== 0) throw new Error(`boxbuild ${args.join(' ')} failed (${result.exitCode}): ${result.stderr}`);
  const figure = (pattern: RegExp) => Number(pattern.exec(String(result.stderr))?.[1] ?? Number.NaN);
  return {
    wallSeconds,
    readySeconds: figure(/timing: guest agent ready(?: \(restored\))? ([\d.]+) s/),
    spawnSeconds: figure(/timing: QEMU started ([\d.]+) s after boxbuild started/),
    peakRssBytes: figure(/^peak-rss-kb (\d+)$/m) * 1024,
  };
}

export const seconds = (value: number) => `${value.toFixed(2)} s`;

/** How long a phase a guest script timed took: its line `NAME START END` (seconds of /proc/uptime, 10 ms steps). */
export function phaseSeconds(output: string, name: string): number {
  const match = new RegExp(`^${name} ([\\d.]+) ([\\d.]+)$`, 'm').exec(output);
  if (!match) throw new Error(`no ${name} figure in: ${output}`);
  return Math.max(Number(match[2]) - Number(match[1]), 0.01);
}

/** Formats rows as an aligned text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** A free TCP port on 127.0.0.1 (for a server the bench starts). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
