import { execa } from 'execa';
import { CLI, median, seconds, table, timeCli } from './measure.js';

const RUNS = 5;

/** `boxbuild exec --box debian -- true`: wall time and QEMU-start-to-agent-ready, median of 5. */
export async function benchBoot(env: NodeJS.ProcessEnv): Promise<string> {
  await execa(process.execPath, [CLI, 'box', 'fetch', 'debian', '-q'], { env });
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await timeCli(['exec', '--box', 'debian', '--verbose', '--', 'true'], env));
  const walls = runs.map((run) => run.wallSeconds);
  const readies = runs.map((run) => run.readySeconds);
  return table(
    ['exec --box debian -- true (x86_64, TCG)', `median of ${RUNS}`, 'min', 'max', 'target'],
    [
      ['wall time', seconds(median(walls)), seconds(Math.min(...walls)), seconds(Math.max(...walls)), '<= 2.5 s'],
      ['QEMU start -> agent ready', seconds(median(readies)), seconds(Math.min(...readies)), seconds(Math.max(...readies)), '<= 2.0 s'],
    ],
  );
}
