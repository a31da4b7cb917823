import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { verifyBox } from '../box/manage.js';
import { parseRegistry } from '../box/registry.js';
import { type BoxRequest, ensureBox } from '../box/resolve.js';
import { median, seconds, table } from './measure.js';

const MiB = 1024 * 1024;
const DOWNLOAD_MIB = 512;
const DOWNLOAD_RUNS = 5;
const CHECK_RUNS = 20;

/** Writes `mib` MiB of random data; returns its sha256. */
async function makeFile(path: string, mib: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (let written = 0; written < mib; written += 16) {
    const chunk = randomBytes(16 * MiB);
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  return hash.digest('hex');
}

/** Starts the benchmark's file server (its own process) on a directory; resolves with its URL and a stop function. */
async function serve(dir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = execa(process.execPath, [fileURLToPath(new URL('./static-server.js', import.meta.url)), dir], { stdin: 'pipe', buffer: false });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (data: Buffer) => resolve(data.toString().trim()));
    child.catch(reject);
  });
  return {
    url,
    stop: async () => {
      child.stdin.end();
      await child.catch(() => {});
    },
  };
}

const rate = (bytes: number, s: number) => `${(bytes / MiB / s).toFixed(0)} MiB/s`;

/**
 * Download throughput of a box file from a loopback server against `curl -o` of the same file,
 * the time of an update check that finds nothing new, and the time to verify a 1 GiB box file.
 */
export async function benchDownloads(): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'boxbuild-bench-'));
  await mkdir(join(work, 'www'));
  const server = await serve(join(work, 'www'));
  try {
    const sha256 = await makeFile(join(work, 'www', 'system.qcow2'), DOWNLOAD_MIB);
    await writeFile(join(work, 'www', 'kernel'), 'kernel');
    await writeFile(join(work, 'www', 'initrd'), 'initrd');
    await writeFile(join(work, 'www', 'packages.json'), '["bash"]');
    const sum = (text: string) => createHash('sha256').update(text).digest('hex');
    const doc = {
      boxes: {
        bench: {
          buildProgram: '/b',
          mirrors: [server.url],
          files: {
            packages: { url: 'packages.json' },
            kernel: { url: 'kernel', sha256: sum('kernel') },
            initrd: { url: 'initrd', sha256: sum('initrd') },
            system: { url: 'system.qcow2', sha256 },
          },
          arches: { x86_64: {} },
        },
      },
    };
    const box = parseRegistry('bench.json', JSON.stringify(doc))[0]!;
    const request = (cacheRoot: string): BoxRequest => ({ cacheRoot, box, arch: 'x86_64', log: () => {} });

    const ours: number[] = [];
    const curls: number[] = [];
    // Each download starts with no dirty pages of an earlier one to write back: the disk's writeback
    // otherwise decides more of the time than the download does.
    const settled = () => execa('sync');
    for (let run = 0; run < DOWNLOAD_RUNS; run++) {
      const cache = join(work, `cache-${run}`);
      await settled();
      let started = performance.now();
      await ensureBox(request(cache));
      ours.push((performance.now() - started) / 1000);
      if (run < DOWNLOAD_RUNS - 1) await rm(cache, { recursive: true });
      await settled();
      started = performance.now();
      await execa('curl', ['-sSf', '-o', join(work, 'curl.out'), `${server.url}/system.qcow2`]);
      curls.push((performance.now() - started) / 1000);
      await rm(join(work, 'curl.out'));
    }
    const bytes = DOWNLOAD_MIB * MiB;

    const cache = join(work, `cache-${DOWNLOAD_RUNS - 1}`);
    const checks: number[] = [];
    for (let run = 0; run < CHECK_RUNS; run++) {
      const started = performance.now();
      await ensureBox(request(cache));
      checks.push(performance.now() - started);
    }

    const big = join(work, 'big');
    await mkdir(big);
    const bigSum = await makeFile(join(big, 'system.qcow2'), 1024);
    const tiny = { name: 'kernel', sha256: sum(''), size: 0 };
    await writeFile(join(big, 'kernel'), '');
    await writeFile(join(big, 'initrd'), '');
    const installed = {
      dir: big,
      manifest: { name: 'bench', arch: 'x86_64' as const, version: '1', sources: {}, files: { kernel: tiny, initrd: { ...tiny, name: 'initrd' }, system: { name: 'system.qcow2', sha256: bigSum, size: 1024 * MiB } } },
    };
    const started = performance.now();
    const problems = await verifyBox(installed);
    const verify = (performance.now() - started) / 1000;
    if (problems.length > 0) throw new Error(`verify failed: ${problems.join('; ')}`);

    const [mine, theirs] = [median(ours), median(curls)];
    return table(
      ['box downloads (loopback)', `median of ${DOWNLOAD_RUNS}`, 'min', 'max', 'target'],
      [
        [`download ${DOWNLOAD_MIB} MiB (boxbuild)`, `${seconds(mine)} (${rate(bytes, mine)})`, seconds(Math.min(...ours)), seconds(Math.max(...ours)), ''],
        [`download ${DOWNLOAD_MIB} MiB (curl -o)`, `${seconds(theirs)} (${rate(bytes, theirs)})`, seconds(Math.min(...curls)), seconds(Math.max(...curls)), ''],
        ['throughput ratio boxbuild / curl', (theirs / mine).toFixed(2), '', '', '>= 0.9'],
        [`update check, no change (median of ${CHECK_RUNS})`, `${median(checks).toFixed(1)} ms`, `${Math.min(...checks).toFixed(1)} ms`, `${Math.max(...checks).toFixed(1)} ms`, '<= 50 ms'],
        ['verify a 1 GiB box file (page cache warm)', `${seconds(verify)} (${rate(1024 * MiB, verify)})`, '', '', ''],
      ],
    );
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
