import { execa } from 'execa';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export interface CliTiming {
  wallSeconds: number;
  /** From QEMU's start to the guest agent's READY, as boxbuild --verbose reports it. */
  readySeconds: number;
}

/** Runs the boxbuild CLI once with --verbose and reads its timings. */
export async function timeCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliTiming> {
  const started = process.hrtime.bigint();
  const result = await execa(process.execPath, [CLI, ...args], { env, reject: false, stdin: 'ignore' });
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.exitCode !== 0) throw new Error(`boxbuild ${args.join(' ')} failed (${result.exitCode}): ${result.stderr}`);
  const ready = /timing: guest agent ready ([\d.]+) s/.exec(String(result.stderr));
  return { wallSeconds, readySeconds: ready ? Number(ready[1]) : Number.NaN };
}

export const seconds = (value: number) => `${value.toFixed(2)} s`;

/** Formats rows as an aligned text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
