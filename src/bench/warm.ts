import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { listStates } from '../box/states.js';
import { formatBytes } from '../util/size.js';
import { CLI, type CliTiming, median, medianWall, seconds, table, timeCli } from './measure.js';

const RUNS = 5;

/**
 * The VMs measured: every box and architecture with the network on (the default), one without, one
 * with a virtiofs share (plugged in after the restore), one over SSH.
 */
const shapes = (share: string) =>
  [
    ['debian', 'x86_64', []],
    ['debian', 'x86_64', ['--no-network']],
    ['debian', 'x86_64', ['--sharing', 'virtiofs', '--share', `${share}:/share`]],
    ['debian', 'aarch64', []],
    ['debian-system', 'x86_64', []],
    ['debian-system', 'x86_64', ['--channel', 'ssh']],
    ['debian-system', 'aarch64', []],
  ] as const;

const mib = (bytes: number) => (Number.isNaN(bytes) ? '-' : `${Math.round(bytes / 2 ** 20)} MiB`);
const medianOf = (runs: CliTiming[], figure: keyof CliTiming) => median(runs.map((run) => run[figure]));

/**
 * `exec -- true` booted cold against restored from the saved state, per box and architecture:
 * wall time, QEMU's start to the agent's READY, peak RSS, the state's size on disk, and four
 * warm runs at once against one alone.
 */
export async function benchWarm(env: NodeJS.ProcessEnv): Promise<string> {
  const rows: string[][] = [];
  const share = await mkdtemp(join(tmpdir(), 'boxbuild-bench-share-'));
  // BOXBUILD_BENCH_BOXES=debian/x86_64,… measures only those (the others need boxes made first).
  const only = process.env.BOXBUILD_BENCH_BOXES?.split(',');
  for (const [box, arch, options] of shapes(share).filter(([box, arch]) => !only || only.includes(`${box}/${arch}`))) {
    await execa(process.execPath, [CLI, 'box', 'fetch', box, '--arch', arch, '-q'], { env });
    const exec = (extra: string[]) => timeCli(['exec', '--box', box, '--arch', arch, '--verbose', ...options, ...extra, '--', 'true'], env);
    await exec([]); // saves the state when there is none yet
    const cold: CliTiming[] = [];
    const warm: CliTiming[] = [];
    for (let i = 0; i < RUNS; i++) {
      cold.push(await exec(['--cold']));
      warm.push(await exec([]));
    }
    const together = await Promise.all([0, 1, 2, 3].map(() => exec([])));
    const states = (await listStates(env.BOXBUILD_CACHE_DIR!)).filter((state) => state.box === box && state.arch === arch);
    const size = states.length ? formatBytes(Math.max(...states.map((state) => state.size))) : '-';
    rows.push([
      [box, arch, ...options].join(' ').replace(share, 'DIR'),
      seconds(medianOf(cold, 'wallSeconds')),
      seconds(medianOf(warm, 'wallSeconds')),
      seconds(medianOf(warm, 'readySeconds')),
      seconds(medianOf(warm, 'spawnSeconds')),
      `${mib(medianOf(cold, 'peakRssBytes'))} / ${mib(medianOf(warm, 'peakRssBytes'))}`,
      size,
      `${seconds(medianOf(together, 'wallSeconds'))} (${(medianOf(together, 'wallSeconds') / medianOf(warm, 'wallSeconds')).toFixed(2)}x)`,
    ]);
  }
  await rm(share, { recursive: true, force: true });
  return table(
    ['exec -- true (TCG)', `cold wall, median of ${RUNS}`, 'warm wall', 'warm: QEMU start to READY', 'start to QEMU spawned', 'peak RSS cold / warm', 'state on disk', '4 warm at once, each'],
    rows,
  );
}

/** The CLI alone: `--version` and `--help`, which load no box, no VM and no HTTP client. */
export async function benchStartup(env: NodeJS.ProcessEnv): Promise<string> {
  const wall = async (args: string[], runEnv = env) => seconds(await medianWall(10, () => execa(process.execPath, args, { env: runEnv, extendEnv: false, stdin: 'ignore' })));
  const rows: string[][] = [];
  for (const args of [['--version'], ['--help'], ['box', 'list', '--no-update-check']]) rows.push([`boxbuild ${args.join(' ')}`, await wall([CLI, ...args])]);
  rows.push(['node -e 0 (the floor)', await wall(['-e', '0'])]);
  // Node reads NODE_EXTRA_CA_CERTS's certificates at every start, whatever the program.
  if (env.NODE_EXTRA_CA_CERTS) {
    const { NODE_EXTRA_CA_CERTS: _, ...without } = env;
    rows.push(['boxbuild --version, without NODE_EXTRA_CA_CERTS', await wall([CLI, '--version'], without)]);
    rows.push(['node -e 0, without NODE_EXTRA_CA_CERTS', await wall(['-e', '0'], without)]);
  }
  return table(['CLI start-up', 'wall, median of 10'], rows);
}
