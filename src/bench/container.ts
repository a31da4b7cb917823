import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { benchRoot, wall } from './import.js';
import { CLI, median, seconds, table } from './measure.js';

const RUNS = 5;
const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

/** The podman images boxbuild made of a box, removed after the benchmark. */
async function removeImages(box: string): Promise<void> {
  const { stdout } = await execa('podman', ['images', '--noheading', '--format', '{{.Repository}}:{{.Tag}}', `localhost/boxbuild/${box}`], { reject: false });
  const images = stdout.split('\n').filter(Boolean);
  if (images.length > 0) await execa('podman', ['rmi', ...images], { reject: false });
}

/**
 * `npm run bench -- container`: the hello build (examples/hello) in a box imported from a busybox
 * root file system, in a container (--container) against the same box's warm and cold VM, and the
 * first container run, which makes the image. With BOXBUILD_BENCH_KIWI=1 also the kiwi build of
 * examples/debian-kiwi in the debian-kiwi box, once in a container and once in its VM (minutes each).
 */
export async function benchContainer(env: NodeJS.ProcessEnv): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'boxbuild-bench-container-'));
  const box = `bench-ctr-${process.pid}`;
  try {
    await benchRoot(join(dir, 'root'), env);
    await execa('tar', ['--numeric-owner', '-C', join(dir, 'root'), '-cf', join(dir, 'root.tar'), '.']);
    await execa(process.execPath, [CLI, 'box', 'import', box, join(dir, 'root.tar'), '-q'], { env });
    const hello = (extra: string[]) => wall(['--box', box, '-q', ...extra, '--', '--description', join(EXAMPLES, 'hello'), '--target-dir', join(dir, 'out')], env);
    const first = await hello(['--container']);
    await hello([]); // saves the VM's state
    const runs: Record<string, number[]> = { container: [], 'VM, warm': [], 'VM, cold': [] };
    for (let i = 0; i < RUNS; i++) {
      runs.container!.push(await hello(['--container']));
      runs['VM, warm']!.push(await hello([]));
      runs['VM, cold']!.push(await hello(['--cold']));
    }
    const rows = Object.entries(runs).map(([how, walls]) => ['hello build', how, seconds(median(walls)), `${seconds(Math.min(...walls))} - ${seconds(Math.max(...walls))}`]);
    rows.push(['hello build', 'container, first run (makes the image in a VM)', seconds(first), '-']);
    if (process.env.BOXBUILD_BENCH_KIWI === '1') {
      let builds = 0;
      const kiwi = (extra: string[]) => wall(['--box', 'debian-kiwi', '-q', ...extra, '--', '--description', join(EXAMPLES, 'debian-kiwi'), '--target-dir', join(dir, `kiwi-${++builds}`)], env);
      rows.push(['kiwi build (debian-kiwi)', 'container, first run (makes the image in a VM)', seconds(await kiwi(['--container'])), '-']);
      rows.push(['kiwi build (debian-kiwi)', 'container', seconds(await kiwi(['--container'])), '-']);
      rows.push(['kiwi build (debian-kiwi)', 'VM (TCG here)', seconds(await kiwi([])), '-']);
    }
    return table(['build', 'where', `wall, median of ${RUNS}`, 'range'], rows);
  } finally {
    await execa(process.execPath, [CLI, 'box', 'remove', box, '-q'], { env, reject: false });
    await removeImages(box);
    if (process.env.BOXBUILD_BENCH_KIWI === '1') await removeImages('debian-kiwi');
    await rm(dir, { recursive: true, force: true });
  }
}
