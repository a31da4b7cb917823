import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { formatBytes } from '../util/size.js';
import { CLI, seconds, table } from './measure.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/debian-kiwi', import.meta.url));

/** The runtime configuration the debian-kiwi box gives kiwi (src/guest/files/kiwi-box), for a like-for-like native build. */
const KIWI_YML = `runtime_checks:
  - disable: check_dracut_module_for_disk_oem_in_package_list,check_dracut_module_for_live_iso_in_package_list,check_dracut_module_for_oem_install_in_package_list,check_dracut_module_for_disk_overlay_in_package_list
xz:
  - options: -1 -T0
`;

interface Build {
  wall: number;
  note: string;
}

async function timed(run: () => Promise<{ exitCode?: number; stderr: unknown; all?: unknown }>, what: string): Promise<number> {
  const started = process.hrtime.bigint();
  const result = await run();
  if (result.exitCode !== 0) throw new Error(`${what} failed (${result.exitCode}): ${String(result.all ?? result.stderr).slice(-3000)}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** kiwi on the host, as root, into a fresh target, with a shared cache of its own (first build: empty). */
async function nativeBuild(work: string, cache: string, index: number): Promise<Build> {
  const config = join(work, 'kiwi.yml');
  await writeFile(config, KIWI_YML);
  // kiwi imports the repositories' keys with gpg, which needs a home of its own.
  const gnupg = join(work, 'gnupg');
  await mkdir(gnupg, { recursive: true, mode: 0o700 });
  const before = await du(cache);
  const args = ['--config', config, '--type', 'tbz', '--shared-cache-dir', cache, 'system', 'build', '--description', EXAMPLE, '--target-dir', join(work, `native-${index}`)];
  const wall = await timed(() => execa('kiwi-ng', args, { reject: false, all: true, env: { GNUPGHOME: gnupg } }), 'native kiwi-ng');
  await rm(join(work, `native-${index}`), { recursive: true, force: true });
  return { wall, note: `kiwi's shared cache grew by ${formatBytes((await du(cache)) - before)}` };
}

async function du(dir: string): Promise<number> {
  const { stdout } = await execa('du', ['-sb', dir], { reject: false });
  return Number(String(stdout).split('\t')[0]) || 0;
}

/** boxbuild --box debian-kiwi; the package cache's own line tells what came from where. */
async function boxBuild(work: string, env: NodeJS.ProcessEnv, index: number): Promise<Build> {
  let stderr = '';
  const args = ['--box', 'debian-kiwi', '--type', 'tbz', '--', '--description', EXAMPLE, '--target-dir', join(work, `box-${index}`)];
  const wall = await timed(async () => {
    const result = await execa(process.execPath, [CLI, ...args], { env, reject: false, stdin: 'ignore' });
    stderr = String(result.stderr);
    return result;
  }, 'boxbuild');
  await rm(join(work, `box-${index}`), { recursive: true, force: true });
  return { wall, note: /package cache: (.*)/.exec(stderr)?.[1] ?? '' };
}

/**
 * The example description's root tarball built twice natively on the host (kiwi-ng as root; skipped
 * when not root or kiwi is not installed) and twice with boxbuild in the debian-kiwi box (TCG here),
 * each pair from an empty package cache.
 */
export async function benchImages(env: NodeJS.ProcessEnv): Promise<string> {
  await execa(process.execPath, [CLI, 'box', 'fetch', 'debian-kiwi', '-q'], { env, stdio: 'inherit' });
  // Not under /tmp: native kiwi mounts its shared cache at the same path in the image root, whose
  // /tmp apt then cannot use.
  const work = await mkdtemp(join(env.BOXBUILD_CACHE_DIR!, 'bench-images-'));
  try {
    const rows: string[][] = [];
    const native = process.getuid?.() === 0 && (await execa('kiwi-ng', ['--version'], { reject: false })).exitCode === 0;
    const nativeBuilds: Build[] = [];
    if (native) {
      const cache = join(work, 'kiwi-cache');
      for (const index of [1, 2]) nativeBuilds.push(await nativeBuild(work, cache, index));
      nativeBuilds.forEach((build, index) => rows.push([`native kiwi-ng (root), build ${index + 1}`, seconds(build.wall), '', build.note]));
    } else {
      rows.push(['native kiwi-ng', 'skipped', '', 'needs root and kiwi (apt-get install kiwi)']);
    }
    await execa(process.execPath, [CLI, 'box', 'prune', '--packages', '-q'], { env });
    for (const index of [1, 2]) {
      const build = await boxBuild(work, env, index);
      const ratio = nativeBuilds[index - 1] ? `${(build.wall / nativeBuilds[index - 1]!.wall).toFixed(1)}x native` : '';
      rows.push([`boxbuild --box debian-kiwi, build ${index}`, seconds(build.wall), ratio, build.note]);
    }
    return table(['examples/debian-kiwi --type tbz (x86_64)', 'wall', 'ratio', 'downloads'], rows);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
