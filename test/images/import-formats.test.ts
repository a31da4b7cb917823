import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { TEST_CACHE } from '../helpers/env.js';
import { bootableImage } from '../helpers/images.js';
import { LAYERED_CHECK, layeredImage } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/temp.js';

/*
 * box import of the formats test/e2e/import leaves to this tier (its run is near CI's hour): the OCI
 * and Docker archives skopeo makes of an image in two layers, and disk images whose root is on btrfs
 * or xfs. The imported boxes get names of this run and are removed after.
 */

const RUN = randomBytes(3).toString('hex');
const IMPORT_TIMEOUT = 300_000;
const name = (what: string) => `t-${what}-${RUN}`;
const imported: string[] = [];
const boxbuild = (args: string[]) => runIsolated(args, { env: { BOXBUILD_CACHE_DIR: TEST_CACHE } });

async function importBox(box: string, source: string) {
  const result = await boxbuild(['box', 'import', box, source]);
  if (result.exitCode === 0) imported.push(box);
  return result;
}

afterAll(async () => {
  for (const box of imported) await boxbuild(['box', 'remove', box, '-q']);
});

describe('box import: OCI and Docker archives', { timeout: IMPORT_TIMEOUT }, () => {
  let layout: string;
  beforeAll(async () => {
    layout = await layeredImage(tempDir());
  });
  const script = LAYERED_CHECK;

  test('the Docker archive skopeo makes of it, and its OCI archive as an oci-archive: reference pulled with skopeo', async () => {
    const dir = tempDir();
    const ociArchive = join(dir, 'image.oci.tar');
    const dockerArchive = join(dir, 'image.docker.tar');
    await execa('skopeo', ['copy', '-q', `oci:${layout}:latest`, `oci-archive:${ociArchive}:latest`]);
    await execa('skopeo', ['copy', '-q', `oci:${layout}:latest`, `docker-archive:${dockerArchive}:boxbuild/test:latest`]);
    // The OCI archive through skopeo (oci-archive:) and the Docker archive read by boxbuild itself (the unit tier reads both formats).
    for (const [what, source] of [['docker-archive', dockerArchive], ['skopeo', `oci-archive:${ociArchive}`]] as const) {
      const box = name(what);
      const result = await importBox(box, source);
      expect(result.exitCode, `${what}: ${result.stderr}`).toBe(0);
      const run = await boxbuild(['exec', '--box', box, '--sharing', 'virtiofs', '--', 'sh', '-c', script]);
      expect(run.stdout, `${what}: ${run.stderr}`).toBe('new\nadded\n0');
    }
  });
});

describe('box import: disk images with xfs and btrfs roots', { timeout: IMPORT_TIMEOUT }, () => {
  // How an imported disk boots is test/e2e/import's Vagrant box; these find the root and its UUID on other file systems.
  test.each(['btrfs', 'xfs'] as const)('a qcow2 whose root is on %s', async (fs) => {
    const dir = tempDir();
    const box = name(fs);
    const result = await importBox(box, await bootableImage(dir, fs, '', fs));
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(new RegExp(`imported ${box} \\(aarch64\\) from disk image `));
    // The image boots by its root's UUID, which the preparing VM read from the superblock (util-linux's blkid agrees).
    const { stdout: uuid } = await execa('blkid', ['-s', 'UUID', '-o', 'value', join(dir, `${fs}.raw`)]);
    expect(readFileSync(join(TEST_CACHE, 'imported', `${box}.json`), 'utf8')).toContain(`root=UUID=${uuid} `);
  });
});
