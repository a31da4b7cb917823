import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux architecture boxbuild runs on). */
const USER_HZ = 100;

/**
 * The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses), so
 * that field N of proc(5) is at index N - 3; undefined when there is no such process.
 */
export function statFields(pid: number | undefined): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, all threads) a process has used, in ms; 0 when it is gone. */
export function cpuTimeMs(pid: number | undefined): number {
  const fields = statFields(pid); // utime is field 14, stime 15
  return fields ? ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ : 0;
}
