import { open, readFile } from 'node:fs/promises';
import { PRIVATE_FILE } from '../box/modes.js';
import { BoxbuildError } from '../errors.js';
import { Child } from '../util/child.js';
import { readHead } from '../util/file.js';

/** The start of an XZ stream (a bzImage's compressed payload). */
export const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/**
 * Extracts the uncompressed ELF `vmlinux` from an x86 bzImage whose payload is XZ-compressed
 * (Debian's kernels). QEMU boots the ELF directly through its PVH entry point, which skips the
 * decompression that costs seconds under emulation.
 */
export async function extractVmlinux(bzImagePath: string, vmlinuxPath: string): Promise<void> {
  const bzImage = await readFile(bzImagePath);
  const offset = bzImage.indexOf(XZ_MAGIC);
  if (offset < 0) throw new BoxbuildError('boxUnavailable', 'the kernel image has no XZ payload to extract');
  // xz writes straight into the file: the uncompressed kernel never passes through this process.
  // It stops at the end of the stream and complains about the trailing bytes; the output is complete.
  const output = await open(vmlinuxPath, 'w', PRIVATE_FILE);
  const xz = await new Child('xz', ['--decompress', '--stdout', '--single-stream'], { stdio: ['pipe', output.fd, 'pipe'], input: bzImage.subarray(offset) }).ended.finally(() =>
    output.close(),
  );
  if ((await readHead(vmlinuxPath, 4)).readUInt32BE(0) !== 0x7f454c46) {
    throw new BoxbuildError('boxUnavailable', `could not extract vmlinux from the kernel image: ${xz.startError?.message ?? xz.stderr.trim()}`);
  }
}

/** "kernel/fs/9p/9p.ko" → "9p"; dashes and underscores are the same in module names. */
const moduleName = (path: string) => path.trim().replace(/^.*\//, '').replace(/\.ko(\.\w+)?$/, '').replace(/-/g, '_');

/**
 * The modules needed to load `wanted`, each after the modules it depends on.
 * `modulesDep` is the text of modules.dep ("path: dep1 dep2"); `wanted` are module names
 * ("9p", "virtio_pci"). Modules built into the kernel (absent from modules.dep) are skipped.
 */
export function moduleClosure(modulesDep: string, modulesBuiltin: string, wanted: readonly string[]): string[] {
  const builtin = new Set(modulesBuiltin.split('\n').map(moduleName));
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    deps.set(path, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean));
    byName.set(moduleName(path), path);
  }
  const ordered: string[] = [];
  const visit = (path: string) => {
    if (ordered.includes(path)) return;
    for (const dep of deps.get(path) ?? []) visit(dep);
    ordered.push(path);
  };
  for (const name of wanted) {
    const path = byName.get(moduleName(name));
    if (path) visit(path);
    else if (!builtin.has(moduleName(name))) throw new BoxbuildError('boxUnavailable', `the kernel has no module "${name}"`);
  }
  return ordered;
}
