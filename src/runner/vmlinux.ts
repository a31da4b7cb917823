import { access, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Arch } from '../box/arch.js';
import type { InstalledBox } from '../box/cache.js';
import { BoxbuildError } from '../errors.js';
import { extractVmlinux } from '../guest/kernel.js';
import { readHead } from '../util/file.js';

const exists = (path: string) => access(path).then(() => true, () => false);

/** A kernel that is an ELF file already (the boxes made here carry the extracted vmlinux). */
const isElf = async (path: string) => (await readHead(path, 4)).readUInt32BE(0) === 0x7f454c46;

/**
 * The kernel a KIWI box boots. On x86_64 that is the uncompressed vmlinux inside the box's bzImage
 * (QEMU boots it through its PVH entry, skipping seconds of decompression under emulation),
 * extracted once per box version and kept beside the bzImage. A kernel without an XZ payload
 * boots as it is.
 */
export async function bootKernel(installed: InstalledBox, arch: Arch, notice: (line: string) => void): Promise<string> {
  const kernel = join(installed.dir, installed.manifest.files.kernel.name);
  if (arch !== 'x86_64' || (await isElf(kernel))) return kernel;
  const vmlinux = `${kernel}.vmlinux`;
  if (await exists(vmlinux)) return vmlinux;
  // Extracted beside the bzImage and renamed when whole, so that concurrent runs never see half of it.
  const partial = `${vmlinux}.${process.pid}.tmp`;
  try {
    await extractVmlinux(kernel, partial);
    await rename(partial, vmlinux);
    return vmlinux;
  } catch (error) {
    await rm(partial, { force: true });
    if (!(error instanceof BoxbuildError)) throw error;
    notice(`booting the compressed kernel of box ${installed.manifest.name} (slower): ${error.message}`);
    return kernel;
  }
}
