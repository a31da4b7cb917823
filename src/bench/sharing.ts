import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, phaseSeconds, table } from './measure.js';

const BACKENDS = ['9p', 'virtiofs', 'sshfs'] as const;

/**
 * Runs in the guest against one directory: sequential write and read of a 256 MiB file, then 2000
 * file creates and stats. Times come from /proc/uptime (10 ms steps; every phase takes far longer).
 */
const GUEST_SCRIPT = `dir=$1
now() { read -r up _ </proc/uptime; echo "$up"; }
phase() { echo "$1 $2 $(now)"; }
start=$(now); dd if=/dev/zero of="$dir/big" bs=1M count=256 conv=fsync 2>/dev/null; phase write "$start"
echo 3 >/proc/sys/vm/drop_caches
start=$(now); dd if="$dir/big" of=/dev/null bs=1M 2>/dev/null; phase read "$start"
rm "$dir/big"; mkdir "$dir/small"
start=$(now); i=0; while [ $i -lt 2000 ]; do : >"$dir/small/f$i"; i=$((i + 1)); done; phase create "$start"
echo 3 >/proc/sys/vm/drop_caches
start=$(now); i=0; while [ $i -lt 2000 ]; do [ -e "$dir/small/f$i" ]; i=$((i + 1)); done; phase stat "$start"
rm -r "$dir/small"
`;

interface Figures {
  writeMiBs: number;
  readMiBs: number;
  createsPerS: number;
  statsPerS: number;
}

function parse(output: string): Figures {
  const seconds = (name: string) => phaseSeconds(output, name);
  return { writeMiBs: 256 / seconds('write'), readMiBs: 256 / seconds('read'), createsPerS: 2000 / seconds('create'), statsPerS: 2000 / seconds('stat') };
}

async function measure(env: NodeJS.ProcessEnv, backend: string, shared: boolean): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'bb-bench-'));
  try {
    const target = shared ? '/bench' : '/tmp';
    const args = ['exec', '--box', 'debian', '-q', `--sharing=${backend}`, '--box-memory', '2G', '--share', `${dir}:/bench`, '--', 'sh', '-c', GUEST_SCRIPT, 'sh', target];
    const result = await execa(process.execPath, [CLI, ...args], { env });
    return parse(String(result.stdout));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Per backend: throughput and metadata rates, and each as a ratio to the guest's own RAM disk. */
export async function benchSharing(env: NodeJS.ProcessEnv): Promise<string> {
  const local = await measure(env, '9p', false);
  const cell = (value: number, reference: number, unit: string) => `${value.toFixed(0)} ${unit} (${((value / reference) * 100).toFixed(0)}%)`;
  const rows = [['guest RAM disk (reference)', ...[local.writeMiBs, local.readMiBs].map((v) => `${v.toFixed(0)} MiB/s`), ...[local.createsPerS, local.statsPerS].map((v) => `${v.toFixed(0)} /s`)]];
  for (const backend of BACKENDS) {
    const figures = await measure(env, backend, true);
    rows.push([
      backend,
      cell(figures.writeMiBs, local.writeMiBs, 'MiB/s'),
      cell(figures.readMiBs, local.readMiBs, 'MiB/s'),
      cell(figures.createsPerS, local.createsPerS, '/s'),
      cell(figures.statsPerS, local.statsPerS, '/s'),
    ]);
  }
  return table(['sharing (256 MiB file, 2000 files; % of RAM disk)', 'seq write', 'seq read', 'creates', 'stats'], rows);
}
