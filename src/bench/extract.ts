import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { readInstalled } from '../box/cache.js';
import { extractVmlinux } from '../guest/kernel.js';
import { debianBzImage } from './kiwi-fixture.js';
import { median, seconds, table } from './measure.js';

const RUNS = 5;

/** Median wall time of `run`, in seconds. */
async function medianWall(run: () => Promise<unknown>): Promise<number> {
  const walls: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = process.hrtime.bigint();
    await run();
    walls.push(Number(process.hrtime.bigint() - started) / 1e9);
  }
  return median(walls);
}

/**
 * The vmlinux a KIWI box boots, out of Debian's XZ bzImage (that of the `debian` box's kernel):
 * boxbuild's extraction against `xz -dc` of the payload into a file, at the same load.
 */
export async function benchExtraction(cacheRoot: string): Promise<string> {
  const debian = await readInstalled(cacheRoot, 'debian', 'x86_64');
  if (!debian) return 'vmlinux extraction: needs the debian x86_64 box (boxbuild box fetch debian)';
  const work = await mkdtemp(join(cacheRoot, 'bench-extract-'));
  try {
    const kernelPackage = Object.keys(debian.manifest.sources).find((name) => name.startsWith('linux-image-'))!;
    const bzImage = await debianBzImage(kernelPackage, work);
    const offset = bzImage.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
    await writeFile(join(work, 'bzImage'), bzImage);
    await writeFile(join(work, 'payload.xz'), bzImage.subarray(offset));
    const ours = await medianWall(async () => {
      await rm(join(work, 'vmlinux'), { force: true });
      await extractVmlinux(join(work, 'bzImage'), join(work, 'vmlinux'));
    });
    const xz = await medianWall(() => execa('sh', ['-c', 'xz -dc --single-stream "$1" > "$2"', 'sh', join(work, 'payload.xz'), join(work, 'plain')]));
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
