import { execa } from 'execa';
import { listStates } from '../box/states.js';
import { formatBytes } from '../util/size.js';
import { CLI, median, seconds, table, timeCli } from './measure.js';

const RUNS = 5;

/** The VMs measured: every box and architecture with the network on (the default), and one without. */
const SHAPES = [
  ['debian', 'x86_64', []],
  ['debian', 'x86_64', ['--no-network']],
  ['debian', 'aarch64', []],
  ['debian-system', 'x86_64', []],
  ['debian-system', 'aarch64', []],
] as const;

/** `exec -- true` booted cold against restored from the saved state, per box and architecture. */
export async function benchWarm(env: NodeJS.ProcessEnv): Promise<string> {
  const rows: string[][] = [];
  for (const [box, arch, options] of SHAPES) {
    await execa(process.execPath, [CLI, 'box', 'fetch', box, '--arch', arch, '-q'], { env });
    const exec = (extra: string[]) => timeCli(['exec', '--box', box, '--arch', arch, '--verbose', ...options, ...extra, '--', 'true'], env);
    await exec([]); // saves the state when there is none yet
    const cold = [];
    const warm = [];
    for (let i = 0; i < RUNS; i++) {
      cold.push((await exec(['--cold'])).wallSeconds);
      warm.push((await exec([])).wallSeconds);
    }
    const states = (await listStates(env.BOXBUILD_CACHE_DIR!)).filter((state) => state.box === box && state.arch === arch);
    const size = states.length ? formatBytes(Math.max(...states.map((state) => state.size))) : '-';
    rows.push([[box, arch, ...options].join(' '), seconds(median(cold)), seconds(median(warm)), `${(median(cold) / median(warm)).toFixed(1)}x`, size]);
  }
  return table(['exec -- true wall (TCG)', `cold, median of ${RUNS}`, 'warm', 'speed-up', 'state file'], rows);
}
