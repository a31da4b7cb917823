import { readdirSync } from 'node:fs';
import type { Options } from 'execa';
import { expect, vi } from 'vitest';
import { type CliResult, runCli, startCli } from './cli.js';
import { processesMentioning, tempDir } from './temp.js';

/**
 * Runs boxbuild with a private TMPDIR and checks, after it ended, that it left neither a process
 * (QEMU or helper) nor a run directory behind.
 */
export async function runIsolated(args: string[], options: Options = {}): Promise<CliResult> {
  const tmp = tempDir('tmp-');
  const result = await runCli(args, { ...options, env: { TMPDIR: tmp, ...options.env } });
  expectNoLeftovers(tmp);
  return result;
}

export function startIsolated(args: string[], options: Options = {}) {
  const tmp = tempDir('tmp-');
  return { tmp, child: startCli(args, { ...options, env: { TMPDIR: tmp, ...options.env } }) };
}

export function expectNoLeftovers(tmp: string): void {
  expect(processesMentioning(tmp)).toEqual([]);
  expect(readdirSync(tmp)).toEqual([]);
}

/** Resolves once the child has printed `text` on its stdout (e.g. the guest command has started). */
export function untilOutput(child: { stdout: NodeJS.ReadableStream | null }, text: string): Promise<void> {
  return new Promise<void>((resolve) => child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes(text) && resolve()));
}

/**
 * Waits until the processes of the run whose private TMPDIR is `tmp` pass `check`, e.g. until QEMU
 * has started or until none is left (it polls /proc).
 */
export function untilProcesses(tmp: string, check: (running: string[]) => void): Promise<void> {
  return vi.waitFor(() => check(processesMentioning(tmp)), { timeout: 60_000, interval: 50 });
}
