import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { readInstalled } from '../box/cache.js';
import { XZ_MAGIC, extractVmlinux } from '../guest/kernel.js';
import { debianBzImage, kernelPackageOf } from './kiwi-fixture.js';
import { medianWall, seconds, table } from './measure.js';

const RUNS = 5;

/**
 * The vmlinux a KIWI box boots, out of Debian's XZ bzImage (that of the `debian` box's kernel):
 * boxbuild's extraction against `xz -dc` of the payload into a file, at the same load.
 */
export async function benchExtraction(cacheRoot: string): Promise<string> {
  const debian = await readInstalled(cacheRoot, 'debian', 'x86_64');
  if (!debian) return 'vmlinux extraction: needs the debian x86_64 box (boxbuild box fetch debian)';
  const work = await mkdtemp(join(cacheRoot, 'bench-extract-'));
  try {
    const bzImage = await debianBzImage(kernelPackageOf(debian), work);
    const offset = bzImage.indexOf(XZ_MAGIC);
    await writeFile(join(work, 'bzImage'), bzImage);
    await writeFile(join(work, 'payload.xz'), bzImage.subarray(offset));
    const ours = await medianWall(RUNS, async () => {
      await rm(join(work, 'vmlinux'), { force: true });
      await extractVmlinux(join(work, 'bzImage'), join(work, 'vmlinux'));
    });
    const xz = await medianWall(RUNS, () => execa('sh', ['-c', 'xz -dc --single-stream "$1" > "$2"', 'sh', join(work, 'payload.xz'), join(work, 'plain')]));
    return table(
      ['vmlinux out of the XZ bzImage', `wall, median of ${RUNS}`],
      [
        ['boxbuild (extractVmlinux)', seconds(ours)],
        ['xz -dc payload > file', seconds(xz)],
        ['ratio', `${(ours / xz).toFixed(2)}x`],
      ],
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
