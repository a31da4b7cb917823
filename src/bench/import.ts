import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { debianArch, hostArch } from '../box/arch.js';
import { formatBytes } from '../util/size.js';
import { CLI, median, seconds, table, timeCli } from './measure.js';

const RUNS = 5;

/**
 * A root file system to import: the `debian` box's static busybox as /bin/sh and /bin/true, and a
 * copy of this host's /usr/share/doc as the bulk (many small files, as a distribution has).
 */
/** A small root file system: the `debian` box's busybox with the applets a build of examples/hello uses, and Debian's documentation for bulk. */
export async function benchRoot(dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const box = (await execa(process.execPath, [CLI, 'box', 'fetch', 'debian', '-q'], { env })).stdout.trim();
  await mkdir(join(dir, 'bin'), { recursive: true });
  await execa('sh', ['-c', 'cpio -i --quiet --to-stdout bin/busybox <"$1" >"$2" && chmod 755 "$2"', 'sh', join(box, 'initrd'), join(dir, 'bin/busybox')]);
  for (const applet of ['sh', 'true', 'cat', 'uname', 'mkdir', 'cp', 'tar', 'gzip']) await symlink('busybox', join(dir, 'bin', applet));
  await mkdir(join(dir, 'etc'));
  await writeFile(join(dir, 'etc/os-release'), 'ID=bench\n');
  await mkdir(join(dir, 'usr/share'), { recursive: true });
  await execa('cp', ['-a', '/usr/share/doc', join(dir, 'usr/share/doc')]);
}

/** Wall seconds of one CLI command. */
export async function wall(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const started = process.hrtime.bigint();
  await execa(process.execPath, [CLI, ...args], { env, stdin: 'ignore' });
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/**
 * `npm run bench -- import`: importing a root file system as a tarball and as an OCI archive, the
 * host's own `tar -x` of it for scale, then the imported box's cold and warm runs against the
 * `debian` box's, and `exec --image` of the tarball.
 */
export async function benchImport(env: NodeJS.ProcessEnv): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'boxbuild-bench-import-'));
  const names = [`bench-tar-${process.pid}`, `bench-oci-${process.pid}`];
  try {
    const root = join(dir, 'root');
    await benchRoot(root, env);
    const { stdout: du } = await execa('du', ['-sb', root]);
    const { stdout: count } = await execa('sh', ['-c', 'find "$1" | wc -l', 'sh', root]);
    const tarball = join(dir, 'root.tar.zst');
    await execa('tar', ['--numeric-owner', '--zstd', '-C', root, '-cf', tarball, '.']);
    const layout = join(dir, 'layout');
    // The OCI archive skopeo makes of the same tree: a one-layer image layout written here, copied.
    const plain = join(dir, 'root.tar');
    await execa('tar', ['--numeric-owner', '-C', root, '-cf', plain, '.']);
    const ociArchive = join(dir, 'root.oci.tar');
    await writeOciLayout(layout, plain);
    await execa('skopeo', ['copy', '-q', `oci:${layout}:latest`, `oci-archive:${ociArchive}:latest`]);
    const extractTo = join(dir, 'extracted');
    await mkdir(extractTo);
    const hostStart = process.hrtime.bigint();
    await execa('tar', ['--zstd', '-C', extractTo, '-xf', tarball]);
    const hostSeconds = Number(process.hrtime.bigint() - hostStart) / 1e9;
    const importTar = await wall(['box', 'import', names[0]!, tarball, '-q'], env);
    const importOci = await wall(['box', 'import', names[1]!, ociArchive, '-q'], env);
    const rows: string[][] = [
      [`the root file system (${Number(count)} entries, ${formatBytes(Number(du.split('\t')[0]))}), host tar -x --zstd as root`, seconds(hostSeconds)],
      ['box import of its .tar.zst (checked, extracted in a VM, qcow2 made)', seconds(importTar)],
      ['box import of its OCI archive', seconds(importOci)],
    ];
    for (const box of [names[0]!, 'debian']) {
      const cold = await timeCli(['exec', '--box', box, '--cold', '-v', '--', 'true'], env);
      await timeCli(['exec', '--box', box, '-q', '--', 'true'], env); // saves the state when there is none
      const warm: number[] = [];
      for (let run = 0; run < RUNS; run++) warm.push((await timeCli(['exec', '--box', box, '-v', '--', 'true'], env)).wallSeconds);
      rows.push([`exec --box ${box === 'debian' ? 'debian' : 'IMPORTED'} -- true: cold / warm (median of ${RUNS})`, `${seconds(cold.wallSeconds)} / ${seconds(median(warm))}`]);
    }
    rows.push(['exec --image root.tar.zst -- true (a throwaway box: checked, extracted, booted)', seconds(await wall(['exec', '--image', tarball, '-q', '--', 'true'], env))]);
    return `Importing images (box import, exec --image)\n${table(['what', 'time'], rows)}`;
  } finally {
    for (const name of names) await execa(process.execPath, [CLI, 'box', 'remove', name, '-q'], { env, reject: false });
    await rm(dir, { recursive: true, force: true });
  }
}

/** A one-layer OCI image layout of a plain tar, written to the image spec. */
async function writeOciLayout(dir: string, tar: string): Promise<void> {
  const { createHash } = await import('node:crypto');
  const { readFile } = await import('node:fs/promises');
  await mkdir(join(dir, 'blobs/sha256'), { recursive: true });
  const blob = async (data: Buffer, mediaType: string) => {
    const hex = createHash('sha256').update(data).digest('hex');
    await writeFile(join(dir, 'blobs/sha256', hex), data);
    return { mediaType, digest: `sha256:${hex}`, size: data.length };
  };
  const layer = await readFile(tar);
  const layerBlob = await blob(layer, 'application/vnd.oci.image.layer.v1.tar');
  const config = await blob(Buffer.from(JSON.stringify({ architecture: debianArch(hostArch()), os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [layerBlob.digest] } })), 'application/vnd.oci.image.config.v1+json');
  const manifest = await blob(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layerBlob] })), 'application/vnd.oci.image.manifest.v1+json');
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }));
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}
