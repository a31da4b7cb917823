import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CLI, median, phaseSeconds, table } from './measure.js';

const FILE_MIB = 64;
const REQUESTS = 20;

/**
 * Runs in the guest: one download of the big file, then REQUESTS small ones one after the other
 * (each a new connection), timed from /proc/uptime. $1 is the server as the guest reaches it.
 */
const GUEST_SCRIPT = `server=$1
now() { read -r up _ </proc/uptime; echo "$up"; }
start=$(now); wget -q -O /dev/null "$server/big" || exit 1; echo "big $start $(now)"
start=$(now); i=0; while [ $i -lt ${REQUESTS} ]; do wget -q -O /dev/null "$server/small" || exit 1; i=$((i + 1)); done; echo "small $start $(now)"
`;

interface Figures {
  mibPerSecond: number;
  msPerRequest: number;
}

function parse(output: string): Figures {
  return { mibPerSecond: FILE_MIB / phaseSeconds(output, 'big'), msPerRequest: (phaseSeconds(output, 'small') * 1000) / REQUESTS };
}

/**
 * A file server on the host's 127.0.0.1 downloaded from the guest: with `--network full` straight
 * through QEMU's user networking (as 10.0.2.2), and in the default filtered mode through the run's
 * egress proxy (its port opened with allow=), which checks and connects every request itself.
 */
export async function benchNetwork(env: NodeJS.ProcessEnv, runs = 3): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bb-bench-net-'));
  const server = execa(process.execPath, [fileURLToPath(new URL('./static-server.js', import.meta.url)), dir], { stdin: 'pipe', stdout: 'pipe' });
  try {
    await writeFile(join(dir, 'big'), '');
    await truncate(join(dir, 'big'), FILE_MIB << 20);
    await writeFile(join(dir, 'small'), 'x'.repeat(1024));
    const url = await new Promise<string>((resolve) => server.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim())));
    const { port } = new URL(url);
    const modes: Array<[string, string[], string]> = [
      ['full (QEMU user networking, 10.0.2.2)', ['--network', 'full'], `http://10.0.2.2:${port}`],
      ['filtered (egress proxy, allow=127.0.0.1)', ['--network', `allow=127.0.0.1:${port}`], `http://127.0.0.1:${port}`],
    ];
    const rows: string[][] = [];
    for (const [name, options, guestUrl] of modes) {
      const figures: Figures[] = [];
      for (let run = 0; run < runs; run++) {
        const result = await execa(process.execPath, [CLI, 'exec', '--box', 'debian', '-q', ...options, '--', 'sh', '-c', GUEST_SCRIPT, 'sh', guestUrl], { env });
        figures.push(parse(String(result.stdout)));
      }
      rows.push([name, `${median(figures.map((f) => f.mibPerSecond)).toFixed(0)} MiB/s`, `${median(figures.map((f) => f.msPerRequest)).toFixed(0)} ms`]);
    }
    return table([`guest downloads from the host (${FILE_MIB} MiB; ${REQUESTS} requests of 1 KiB; median of ${runs})`, 'throughput', 'per request'], rows);
  } finally {
    server.stdin!.end();
    await server.catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}
