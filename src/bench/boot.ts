import { execa } from 'execa';
import { CLI, median, seconds, table, timeCli } from './measure.js';

const RUNS = 5;

export interface BootCase {
  box: string;
  arch: string;
  /** What the figures are compared with. */
  target: { wall: string; ready: string };
}

export const BOOT_CASES: BootCase[] = [
  { box: 'debian', arch: 'x86_64', target: { wall: '<= 2.5 s', ready: '<= 2.0 s' } },
  { box: 'debian', arch: 'aarch64', target: { wall: '', ready: '<= 2.5 s' } },
  { box: 'debian-system', arch: 'x86_64', target: { wall: '', ready: '<= 2x initramfs' } },
  { box: 'debian-system', arch: 'aarch64', target: { wall: '', ready: '<= 2x initramfs' } },
];

/** `boxbuild exec --box B --arch A --cold -- true`: wall time and QEMU-start-to-agent-ready of a boot, median of 5. */
export async function benchBoot(env: NodeJS.ProcessEnv, cases: BootCase[] = BOOT_CASES): Promise<string> {
  const rows: string[][] = [];
  for (const { box, arch, target } of cases) {
    await execa(process.execPath, [CLI, 'box', 'fetch', box, '--arch', arch, '-q'], { env });
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await timeCli(['exec', '--box', box, '--arch', arch, '--cold', '--verbose', '--', 'true'], env));
    const walls = runs.map((run) => run.wallSeconds);
    const readies = runs.map((run) => run.readySeconds);
    const range = (values: number[]) => `${seconds(Math.min(...values))} - ${seconds(Math.max(...values))}`;
    rows.push([`${box} ${arch}`, 'exec -- true wall', seconds(median(walls)), range(walls), target.wall]);
    rows.push(['', 'QEMU start -> agent ready', seconds(median(readies)), range(readies), target.ready]);
  }
  return table(['box (TCG)', 'what', `median of ${RUNS}`, 'range', 'target'], rows);
}
