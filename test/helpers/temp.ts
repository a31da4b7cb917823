import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh directory in the test file's own temporary directory (TMPDIR, see test/file-setup.ts),
 * which is removed after the file, also when it fails.
 */
export function tempDir(prefix = 'bb-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A process on this host, with what tells which run started it. */
export interface HostProcess {
  pid: number;
  ppid: number;
  /** The command line, its arguments joined by spaces. */
  command: string;
  /** The TMPDIR it started with. */
  tmpdir?: string;
}

/** The processes on this host that this user may inspect. */
function hostProcesses(): HostProcess[] {
  const found: HostProcess[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      found.push({
        pid: Number(pid),
        ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]),
        command: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(),
        tmpdir: readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').find((entry) => entry.startsWith('TMPDIR='))?.slice('TMPDIR='.length),
      });
    } catch {
      // the process ended meanwhile, or belongs to another user
    }
  }
  return found;
}

/**
 * The processes a run started, found by its private directory `dir`: they name it on their command
 * line (QEMU, virtiofsd) or inherited it as TMPDIR (every helper, e.g. sftp-server). Never this process.
 */
export function processesOf(dir: string): HostProcess[] {
  const inDir = (path?: string) => path === dir || !!path?.startsWith(`${dir}/`);
  return hostProcesses().filter((p) => p.pid !== process.pid && (p.command.includes(dir) || inDir(p.tmpdir)));
}

export const describeProcess = (p: HostProcess) => `${p.pid} ${p.command.slice(0, 120)}`;

/** processesOf(dir), one line each: for `expect(...).toEqual([])`. */
export function processesMentioning(dir: string): string[] {
  return processesOf(dir).map(describeProcess);
}

/** Ends these processes with SIGKILL, by their id; one that ended meanwhile is skipped. */
export function killProcesses(processes: HostProcess[]): void {
  for (const p of processes) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // it ended meanwhile
    }
  }
}
