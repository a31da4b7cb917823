/*
 * What the `box` commands do (src/cli/box.ts defines them): loaded only when one of them runs, so
 * that a build or --version does not load the box manager's commands.
 */
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { type Arch, hostArch, parseArch } from '../box/arch.js';
import { type InstalledBox, boxLockPath, cacheRoot, openCache, readInstalled } from '../box/cache.js';
import { describeNetError } from '../box/failures.js';
import { type CachedVariant, listCached, pruneCache, removeBox, spaceFreed, verifyBox } from '../box/manage.js';
import { DEFAULT_PART_SIZE } from '../box/oci/parts.js';
import { formatReference } from '../box/oci/reference.js';
import { type BoxEntry, type Registry, defaultArch, findBox, loadRegistry } from '../box/registry.js';
import { listStates } from '../box/states.js';
import { type BoxRequest, ensureBox, isBoxCurrent, makeBox, netContext, repairBox, updateBox } from '../box/resolve.js';
import { withLock } from '../box/lock.js';
import { BoxbuildError, usageError } from '../errors.js';
import { packageCacheSizes } from '../package-cache/store.js';
import { formatBytes, parseMemoryMiB } from '../util/size.js';
import { notice, registryFiles } from './common.js';

export interface BoxFlags {
  arch?: string;
  boxes?: string[];
  quiet?: boolean;
  updateCheck?: boolean;
  json?: boolean;
  names?: boolean;
  all?: boolean;
  package?: string[];
  diskSize?: string;
  packages?: boolean;
  dryRun?: boolean;
  repair?: boolean;
  sign?: string;
  partSize?: string;
  memory?: string;
  kernel?: string;
  initrd?: string;
}

export const print = (line: string) => process.stdout.write(`${line}\n`);

export function request(flags: BoxFlags, box: BoxEntry, arch: Arch, signal?: AbortSignal): BoxRequest {
  const recipe = { packages: flags.package, diskSizeMiB: flags.diskSize === undefined ? undefined : parseMemoryMiB(flags.diskSize, '--disk-size') };
  return { cacheRoot: openCache(cacheRoot()), box, arch, log: notice(flags.quiet), updateCheck: flags.updateCheck, progress: flags.quiet ? undefined : process.stderr, recipe, signal, runScript: async (script) => (await import('../runner/box-vm.js')).runDiskScript(script) };
}

/** The cached variants a command acts on: all, or those of one box (and one architecture). */
async function cachedVariants(name: string | undefined, flags: BoxFlags): Promise<CachedVariant[]> {
  const arch = flags.arch ? parseArch(flags.arch) : undefined;
  return (await listCached(cacheRoot())).filter((variant) => (!name || variant.name === name) && (!arch || variant.arch === arch));
}

type Status = 'current' | 'outdated' | 'unchecked' | 'unknown' | 'not in the registry';

async function statusOf(flags: BoxFlags, registry: Registry, variant: CachedVariant): Promise<{ status: Status; reason?: string }> {
  const box = registry.get(variant.name);
  if (!box?.arches[variant.arch]) return { status: 'not in the registry' };
  if (!variant.installed) return { status: 'unknown', reason: 'its manifest cannot be read' };
  if (flags.updateCheck === false) return { status: 'unchecked' };
  try {
    return { status: (await isBoxCurrent(request(flags, box, variant.arch), variant.installed)) ? 'current' : 'outdated' };
  } catch (error) {
    return { status: 'unknown', reason: describeNetError(error) };
  }
}

/** Where a box comes from: the registry reference it is pulled by, "made here", "imported" (box import), or "download" (files on servers). */
function sourceOf(box: BoxEntry): string {
  const refs = [...new Set(Object.values(box.arches).flatMap((entry) => (entry?.oci ? [formatReference(entry.oci.ref)] : [])))];
  if (refs.length > 0) return refs.join(', ');
  if (box.make === 'import') return 'imported';
  return box.make ? 'made here' : 'download';
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

export async function listBoxes(flags: BoxFlags): Promise<void> {
  const registry = loadRegistry(registryFiles(flags), cacheRoot());
  if (flags.names) {
    process.stdout.write([...registry.keys()].sort().map((name) => `${name}\n`).join(''));
    return;
  }
  const cached = await listCached(cacheRoot());
  const statuses = await Promise.all(cached.map((variant) => statusOf(flags, registry, variant)));
  const states = await listStates(cacheRoot());
  const packageCaches = await packageCacheSizes(cacheRoot());
  const warmStates = (variant: CachedVariant) =>
    states.filter((state) => state.box === variant.name && state.arch === variant.arch && state.boxDir === variant.installed?.dir).map(({ size, savedAt }) => ({ size, savedAt }));
  const names = [...new Set([...registry.keys(), ...cached.map((variant) => variant.name)])].sort();
  const boxes = names.map((name) => {
    const box = registry.get(name);
    return {
      name,
      description: box?.description ?? '',
      protocol: box?.protocol,
      origin: box?.origin,
      arches: Object.keys(box?.arches ?? {}),
      source: box && sourceOf(box),
      cached: cached.flatMap((variant, index) =>
        variant.name === name
          ? [
              {
                arch: variant.arch,
                version: variant.installed?.manifest.version,
                dir: variant.installed?.dir,
                size: variant.size,
                ...statuses[index],
                ...(variant.installed?.manifest.oci ? { oci: variant.installed.manifest.oci } : {}),
                warmStates: warmStates(variant),
                packageCache: packageCaches.get(`${name}/${variant.arch}`) ?? 0,
              },
            ]
          : [],
      ),
    };
  });
  if (flags.json) {
    print(JSON.stringify(boxes, null, 2));
    return;
  }
  const rows = [['NAME', 'ARCHES', 'SOURCE', 'CACHED', 'VERSION', 'SIZE', 'WARM STATES', 'PACKAGES', 'STATUS']];
  for (const box of boxes) {
    const cells = [box.name, box.arches.join(',') || '-', box.source ?? '-'];
    if (box.cached.length === 0) rows.push([...cells, '-', '', '', '', '', box.protocol && box.arches.length ? 'not cached' : '']);
    for (const variant of box.cached) {
      const status = variant.reason ? `${variant.status} (${variant.reason})` : variant.status;
      const warm = variant.warmStates.length ? `${variant.warmStates.length} (${formatBytes(variant.warmStates.reduce((sum, state) => sum + state.size, 0))})` : '-';
      const version = `${variant.version ?? '?'}${variant.oci ? ` (${variant.oci.manifest.slice(0, 19)})` : ''}`;
      rows.push([...cells, variant.arch, version, formatBytes(variant.size), warm, variant.packageCache ? formatBytes(variant.packageCache) : '-', status]);
    }
  }
  print(table(rows));
}

export async function updateBoxes(name: string | undefined, flags: BoxFlags): Promise<void> {
  if (!name && !flags.all) throw usageError('box update: name a box, or give --all');
  const registry = loadRegistry(registryFiles(flags), cacheRoot());
  const targets = (await cachedVariants(name, flags)).filter((variant) => registry.get(variant.name)?.arches[variant.arch]);
  if (name && targets.length === 0) targets.push({ name, arch: flags.arch ? parseArch(flags.arch) : hostArch(), size: 0 });
  for (const target of targets) {
    const { box } = findBox(registry, target.name, target.arch);
    const installed = await updateBox({ ...request(flags, box, target.arch), updateCheck: true });
    const what = installed.dir === target.installed?.dir ? 'is current' : target.installed ? 'updated to' : 'installed';
    print(`${target.name} (${target.arch}) ${what} ${installed.manifest.version}: ${installed.dir}`);
  }
}

/** What `box verify` found of one cached variant. */
interface Verified {
  name: string;
  arch: Arch;
  version?: string;
  dir?: string;
  ok: boolean;
  problems: string[];
  /** With --repair: the version it was replaced by. */
  repaired?: string;
}

/** Replaces a damaged variant with a fresh copy; a problem of its own when the registry does not know it. */
async function repairVariant(flags: BoxFlags, registry: Registry, result: Verified, signal?: AbortSignal): Promise<void> {
  const box = registry.get(result.name);
  if (!box?.arches[result.arch]) {
    result.problems.push('not in the registry, so it cannot be repaired: remove it ("boxbuild box remove NAME")');
    return;
  }
  result.repaired = (await repairBox(request(flags, box, result.arch, signal))).manifest.version;
}

export async function verifyBoxes(name: string | undefined, flags: BoxFlags, signal?: AbortSignal): Promise<void> {
  const variants = await cachedVariants(name, flags);
  if (name && variants.length === 0) throw usageError(`box "${name}"${flags.arch ? ` (${flags.arch})` : ''} is not in the cache`);
  const registry = flags.repair ? loadRegistry(registryFiles(flags), cacheRoot()) : undefined;
  const results: Verified[] = [];
  for (const { name: box, arch, installed } of variants) {
    const problems = installed ? await verifyBox(installed) : ['its manifest (box.json) cannot be read'];
    const result: Verified = { name: box, arch, version: installed?.manifest.version, dir: installed?.dir, ok: problems.length === 0, problems };
    if (!flags.json) print(`${box} (${arch})${result.version ? ` ${result.version}` : ''}: ${result.ok ? 'ok' : 'FAILED'}`);
    if (!result.ok && registry) {
      await repairVariant(flags, registry, result, signal);
      if (result.repaired && !flags.json) print(`${box} (${arch}) repaired: ${result.repaired}`);
    }
    results.push(result);
  }
  if (flags.json) print(JSON.stringify(results, null, 2));
  const failed = results.filter((result) => !result.ok && !result.repaired).flatMap((result) => result.problems.map((problem) => `${result.name} (${result.arch}): ${problem}`));
  if (failed.length > 0) {
    throw new BoxbuildError('boxUnavailable', 'some box files are damaged or do not match their manifest: "boxbuild box verify --repair" makes or downloads those boxes afresh', {
      detail: failed.join('\n'),
    });
  }
}

/**
 * `box push NAME[:ARCH] REF`: publishes the cached box (every cached architecture, or the one
 * named, merged into the index the tag has) under each variant's lock, so that no update or
 * prune changes it meanwhile. Prints the pushed reference with its digest.
 */
export async function pushBoxes(spec: string, reference: string, flags: BoxFlags, signal?: AbortSignal): Promise<void> {
  const [name, archName, extra] = spec.split(':');
  if (!name || extra !== undefined || archName === '') throw usageError(`box push: "${spec}" is not NAME or NAME:ARCH`);
  const arch = archName === undefined ? undefined : parseArch(archName);
  const { parseReference } = await import('../box/oci/reference.js');
  const ref = parseReference(reference);
  const partSize = flags.partSize === undefined ? DEFAULT_PART_SIZE : (await import('../box/http.js')).parseByteCount(flags.partSize, '--part-size');
  if (partSize < 1 << 20 || partSize > 2 ** 32) throw usageError(`--part-size: ${flags.partSize} is not between 1M and 4G`);
  const root = openCache(cacheRoot());
  const variants = (await listCached(root)).filter((variant) => variant.name === name && (!arch || variant.arch === arch));
  if (variants.length === 0) throw usageError(`box push: box "${name}"${arch ? ` (${arch})` : ''} is not in the cache; fetch or make it first`);
  const log = notice(flags.quiet);
  const ctx = await netContext({ log, progress: flags.quiet ? undefined : process.stderr, signal });
  const { pushBox } = await import('../box/oci/push.js');
  const locked = async (index: number): Promise<Awaited<ReturnType<typeof pushBox>>> => {
    if (index === variants.length) {
      const boxes = await Promise.all(variants.map((variant) => readInstalled(root, name, variant.arch)));
      const damaged = variants.find((_, at) => !boxes[at]);
      if (damaged) throw new BoxbuildError('boxUnavailable', `box ${name} (${damaged.arch}) is damaged (its manifest cannot be read); repair it with "boxbuild box verify --repair ${name} --arch ${damaged.arch}"`);
      return pushBox(ctx, { boxes: boxes as InstalledBox[], ref, partSize, signWith: flags.sign, keepOtherArches: arch !== undefined, log });
    }
    const variant = variants[index]!;
    return withLock(boxLockPath(root, name, variant.arch), () => locked(index + 1), { doing: `pushing box ${name} (${variant.arch})`, onWait: log, signal });
  };
  const result = await locked(0);
  log(`pushed box ${name} (${result.manifests.map((manifest) => manifest.arch).join(', ')}): ${result.sent.blobs} blobs sent (${formatBytes(result.sent.bytes)}), ${result.alreadyThere} already there`);
  print(`${formatReference({ registry: ref.registry, repository: ref.repository })}@${result.digest}`);
}

/** Source references skopeo pulls (everything else is a path). */
const REFERENCE = /^(docker|oci|oci-archive|docker-archive|containers-storage):/;

/** `--kernel FILE --initrd FILE` (both or neither): regular files, read where they are. */
function givenKernel(flags: BoxFlags): { kernel: string; initrd: string } | undefined {
  if (flags.kernel === undefined && flags.initrd === undefined) return undefined;
  if (flags.kernel === undefined || flags.initrd === undefined) throw usageError('box import: --kernel and --initrd go together');
  for (const [option, file] of [['--kernel', flags.kernel], ['--initrd', flags.initrd]] as const) {
    if (!statSync(file, { throwIfNoEntry: false })?.isFile()) throw usageError(`${option} ${file}: not a file`);
  }
  return { kernel: resolve(flags.kernel), initrd: resolve(flags.initrd) };
}

/**
 * `box import NAME SOURCE`: NAME must be free in the registries (an imported box of that name is
 * imported again: a new version, or another architecture). Prints the box's directory.
 */
export async function importCommand(name: string, source: string, flags: BoxFlags, signal?: AbortSignal): Promise<void> {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw usageError(`box import: box name "${name}" must be lower-case letters, digits, ".", "_" or "-"`);
  const registered = loadRegistry(registryFiles(flags)).get(name);
  if (registered) throw usageError(`box import: there is a box "${name}" in ${registered.origin}: choose another name`);
  const root = openCache(cacheRoot());
  const { importBox } = await import('../box/import/install.js');
  const log = notice(flags.quiet);
  const { installed, source: read } = await importBox(
    {
      cacheRoot: root,
      name,
      source: REFERENCE.test(source) ? source : resolve(source),
      arch: flags.arch ? parseArch(flags.arch) : undefined,
      diskSizeMiB: flags.diskSize === undefined ? undefined : parseMemoryMiB(flags.diskSize, '--disk-size'),
      memoryMiB: flags.memory === undefined ? undefined : parseMemoryMiB(flags.memory, '--memory'),
      kernel: givenKernel(flags),
      log,
      signal,
      runScript: async (script) => (await import('../runner/box-vm.js')).runDiskScript(script),
      initramfsBox: (arch) => ensureBox(request(flags, findBox(loadRegistry(), 'debian', arch).box, arch, signal)),
    },
    loadRegistry([], root).get(name),
  );
  const { arch, files } = installed.manifest;
  log(`imported ${name} (${arch}) from ${read.what} ${source}: ${formatBytes(files.system!.size)} disk, sha256 ${read.sha256.slice(0, 16)}`);
  print(installed.dir);
}

/** `box fetch` and `box make`: the box's directory, once it is current (or made again). */
export async function singleBox(name: string, flags: BoxFlags, act: 'fetch' | 'make', signal?: AbortSignal): Promise<void> {
  const registry = loadRegistry(registryFiles(flags), cacheRoot());
  const arch = flags.arch ? parseArch(flags.arch) : defaultArch(registry.get(name));
  const { box: entry } = findBox(registry, name, arch);
  print((await (act === 'fetch' ? ensureBox : makeBox)(request(flags, entry, arch, signal))).dir);
}

/** `box remove`: the box's cached versions, and its container images. */
export async function removeCommand(name: string, flags: BoxFlags, signal?: AbortSignal): Promise<void> {
  const arches = await removeBox(openCache(cacheRoot()), name, flags.arch ? parseArch(flags.arch) : undefined, notice(flags.quiet), signal);
  const { removeBoxImages } = await import('../driver/container/image.js');
  const images = await removeBoxImages(name, arches, signal);
  print(`removed ${name} (${arches.join(', ')})${images ? `, and its container image${images === 1 ? '' : 's'}` : ''}`);
}

/** `box prune`. */
export async function pruneCommand(flags: BoxFlags): Promise<void> {
  const { removed, freed, skipped } = await pruneCache(openCache(cacheRoot()), { allPackages: flags.packages, dryRun: flags.dryRun, runDirsIn: tmpdir() });
  for (const line of skipped) notice(flags.quiet)(`skipped ${line}`);
  const items = `${removed.length} ${removed.length === 1 ? 'item' : 'items'}`;
  if (flags.dryRun) {
    for (const path of removed) print(`would remove ${path} (${formatBytes(await spaceFreed([path]))})`);
    print(`would prune ${items}, freeing ${formatBytes(freed)}`);
  } else {
    print(`pruned ${items}, freed ${formatBytes(freed)}`);
  }
}
