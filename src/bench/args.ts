import { execa } from 'execa';
import { CLI, median, seconds, table } from './measure.js';

const RUNS = 5;

/** From the agent's READY to the command's end, as boxbuild --verbose reports both. */
async function requestToExit(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const result = await execa(process.execPath, [CLI, 'exec', '--box', 'debian', '--verbose', '--', 'true', ...argv], { env, reject: false, stdin: 'ignore' });
  const at = (what: string) => Number(new RegExp(`timing: ${what}[^\\d]* ([\\d.]+) s`).exec(String(result.stderr))?.[1]);
  if (result.exitCode !== 0) throw new Error(`boxbuild exec -- true (${argv.length} arguments) failed (${result.exitCode}): ${result.stderr}`);
  return at('command finished') - at('guest agent ready');
}

/** What many or long arguments cost the run (debian x86_64, warm): request sent to command finished, against one argument. */
export async function benchArgs(env: NodeJS.ProcessEnv): Promise<string> {
  const cases: [string, string[]][] = [
    ['1 argument', []],
    ['5000 arguments', Array.from({ length: 5000 }, (_, i) => `argument-${i}`)],
    ['1 MiB in 16 arguments', Array.from({ length: 16 }, () => 'x'.repeat(64 * 1024))],
  ];
  await requestToExit([], env); // a saved state, so that every case restores
  const rows: string[][] = [];
  for (const [what, argv] of cases) {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) times.push(await requestToExit(argv, env));
    rows.push([what, seconds(median(times))]);
  }
  return table(['exec -- true ARGS (debian x86_64, warm)', `agent ready -> command finished, median of ${RUNS}`], rows);
}
