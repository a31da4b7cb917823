import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CLI, seconds, table } from './measure.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/c-hello/', import.meta.url));

/** `make` of examples/c-hello in each system box (timed in the guest) against the same make on the host. */
export async function benchCBuild(env: NodeJS.ProcessEnv, arches = ['x86_64', 'aarch64']): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'bb-cbuild-'));
  try {
    await mkdir(join(work, 'host'));
    const started = process.hrtime.bigint();
    await execa('make', ['-C', EXAMPLE, `OUT=${join(work, 'host')}`], { stdio: 'ignore' });
    const host = Number(process.hrtime.bigint() - started) / 1e9;
    const rows = [['host', seconds(host), '1.0x']];
    for (const arch of arches) {
      const args = ['--box', 'debian-system', '--arch', arch, '-q', '--', '--description', EXAMPLE, '--target-dir', join(work, arch)];
      const result = await execa(process.execPath, [CLI, ...args], { env });
      const guest = Number(/make took ([\d.]+) s in the guest/.exec(String(result.stdout))?.[1]);
      rows.push([`debian-system ${arch} (TCG)`, seconds(guest), `${(guest / host).toFixed(1)}x`]);
    }
    return table(['make of examples/c-hello', 'time', 'vs host'], rows);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
