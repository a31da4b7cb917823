import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BoxbuildError, usageError } from '../../errors.js';
import { ImageRefused, inspectImage, selfContainedImage } from '../../qemu/image-file.js';
import { runChild, lastWords } from '../../util/child.js';
import { readHead } from '../../util/file.js';
import { shown } from '../../util/shown.js';
import { type Arch, hostArch, isArch } from '../arch.js';
import { PRIVATE_DIR } from '../modes.js';
import { ociArch } from '../oci/reference.js';
import { type Survey, extractMembers, keptData, memberOf, surveyTar } from './archive.js';
import { readLayer } from './layer.js';
import {
  type BlobStore,
  type Descriptor,
  type ImageConfig,
  JSON_MAX,
  LayoutStore,
  checkLayoutVersion,
  chooseDockerImage,
  configArch,
  hexOf,
  readConfig,
  readDockerManifest,
  readLayoutFile,
  readOciImage,
  sha256Hex,
  verifyBlob,
} from './oci.js';
import { type Compression, compressionOf, hashFile, unpackFile } from './streams.js';
import { MergedTree, Refusal, UsageProblem, pathParts } from './tree.js';

/*
 * The host side of `boxbuild box import NAME SOURCE`: what SOURCE is (told by its content, never
 * its name), checked as hostile input, and prepared in a work directory for the VM that makes the
 * box's disk of it. Nothing of an image is ever extracted on the host: layers are plain tars the
 * guest extracts (with busybox tar), each entry of which was checked here first (see tree.ts).
 */

/** A plain (uncompressed) tar file in the work directory, and what its whiteouts delete before it is extracted. */
export interface Layer {
  /** Absolute path of a plain tar in `work` (decompressed here). */
  file: string;
  /**
   * Paths (relative, no leading '/', normalized) that this layer's `.wh.NAME` entries delete from
   * the layers below; also the lower paths this layer replaces by an entry of another kind (a
   * directory by a file, a symlink by a directory: busybox tar would keep the old one). None lies
   * below another.
   */
  whiteouts: string[];
  /** Directories (relative, normalized; '' = the root) whose contents below are deleted (`.wh..wh..opq`). */
  opaque: string[];
  /** The whiteout marker entries' own paths in this tar (the VM removes them after extracting). */
  markers: string[];
}

export type ImportSource =
  | { kind: 'disk'; format: 'qcow2' | 'raw'; path: string; what: 'disk image' | 'Vagrant box'; arch?: Arch; sha256: string; size: number }
  | {
      kind: 'rootfs';
      what: 'directory' | 'tarball' | 'OCI layout' | 'OCI archive' | 'Docker archive' | 'image reference';
      layers: Layer[];
      arch: Arch;
      /** Total size of the merged tree's regular files, and its number of entries. */
      bytes: number;
      files: number;
      sha256: string;
      size: number;
    };

type RootfsWhat = Extract<ImportSource, { kind: 'rootfs' }>['what'];

export interface ImportOptions {
  arch?: Arch;
  signal?: AbortSignal;
}

/** Transports of skopeo that SOURCE may name an image by. */
const REFERENCE = /^(docker|oci|oci-archive|docker-archive|containers-storage):/;

const EXPECTED =
  'expected a qcow2 or raw disk image (MBR, GPT, or one ext2/3/4, xfs or btrfs file system), a libvirt Vagrant box, a root file system directory or .tar(.gz|.xz|.zst), ' +
  'an OCI layout or archive, a Docker archive, or an image reference (docker://, oci:, oci-archive:, docker-archive:, containers-storage:)';

/** Files a root file system's architecture is read from (the ELF header of the first that is one), symlinks followed in the tree. */
const ELF_PROGRAMS = ['bin/sh', 'usr/bin/sh', 'bin/busybox', 'sbin/init'];

/**
 * Reads SOURCE (a path, or a skopeo reference), checks it, and prepares it in `work` (a private
 * empty directory the caller removes). Fails with one line: `usage` for a source that is not
 * found, of no known format, or that needs (or contradicts) --arch; `boxUnavailable` for one of a
 * known format whose content is bad. `sha256`/`size` are those of the source's bytes: a file's as
 * given, the tar made of a root file system directory; for an OCI layout directory and an image
 * reference, the image manifest's digest and size (the manifest names every other blob by digest).
 */
export async function readImportSource(source: string, work: string, options: ImportOptions): Promise<ImportSource> {
  options.signal?.throwIfAborted();
  try {
    return await readSource(source, resolve(work), options);
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    throw asBoxbuildError(error, shown(source));
  }
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ');

function asBoxbuildError(error: unknown, label: string): BoxbuildError {
  if (error instanceof BoxbuildError) return error;
  if (error instanceof UsageProblem) return new BoxbuildError('usage', `${label}: ${oneLine(error.message)}`, { cause: error });
  if (error instanceof Refusal) return new BoxbuildError('boxUnavailable', `${label}: ${oneLine(error.message)}`, { cause: error });
  return new BoxbuildError('boxUnavailable', `cannot import ${label}: ${oneLine((error as Error).message)}`, { cause: error });
}

/** Runs `task`, its refusals and failures put after `where` ("layer 2: ..."). */
async function within<T>(where: string, task: () => Promise<T>): Promise<T> {
  try {
    return await task();
  } catch (error) {
    if (error instanceof UsageProblem || error instanceof BoxbuildError || (error as Error).name === 'AbortError') throw error;
    throw new Refusal(`${where}: ${(error as Error).message}`, { cause: error });
  }
}

async function readSource(source: string, work: string, options: ImportOptions): Promise<ImportSource> {
  const label = shown(source);
  if (REFERENCE.test(source)) return readReference(source, work, options);
  const path = resolve(source);
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') throw new BoxbuildError('usage', `${label}: no such file or directory`, { cause: error });
    throw new BoxbuildError('usage', `cannot read ${label}: ${error.message}`, { cause: error });
  });
  if (info.isDirectory()) {
    const isFile = (name: string) => stat(join(path, name)).then((found) => found.isFile(), () => false);
    if ((await isFile('oci-layout')) && (await isFile('index.json'))) return readLayoutDirectory(path, work, options, 'OCI layout', undefined, false);
    return readDirectory(path, work, options);
  }
  if (!info.isFile()) throw usageError(`${label} is not a file or a directory`);
  const head = await readHead(path, HEAD_BYTES);
  if (head.subarray(0, 4).equals(Buffer.from('QFI\xfb', 'latin1'))) return readDiskImage(path, label, options);
  const compression = compressionOf(head);
  if (compression !== 'none' || head.subarray(257, 262).toString('latin1') === 'ustar') return readTarSource(path, compression, work, options);
  if ((head[510] === 0x55 && head[511] === 0xaa) || head.subarray(512, 520).toString('latin1') === 'EFI PART' || isFileSystem(head)) return readDiskImage(path, label, options);
  try {
    inspectImage(head, info.size); // another disk format QEMU knows is named
  } catch (error) {
    if (error instanceof ImageRefused) throw new BoxbuildError('usage', `${label} ${error.message}`, { cause: error });
    throw error;
  }
  throw usageError(`unknown image format: ${label} (${EXPECTED})`);
}

/** Enough of a file to tell its format: a btrfs superblock's magic lies at 64 KiB + 0x40. */
const HEAD_BYTES = 0x10048;

/** A raw disk that is one file system, no partition table (ext2/3/4, xfs or btrfs, by their superblocks' magic). */
const isFileSystem = (head: Buffer) =>
  (head.length >= 1082 && head.readUInt16LE(1080) === 0xef53) || head.subarray(0, 4).toString('latin1') === 'XFSB' || head.subarray(0x10040, 0x10048).toString('latin1') === '_BHRfS_M';

/** A disk image: used where it is, once checked to name no other file. */
async function readDiskImage(path: string, label: string, options: ImportOptions): Promise<ImportSource> {
  const { format } = await selfContainedImage(path, label, 'boxUnavailable');
  const { sha256, size } = await hashFile(path, options.signal);
  return { kind: 'disk', format, path, what: 'disk image', sha256, size };
}

/** A tar source: a Vagrant box, an OCI or Docker archive, else a root file system tarball. */
async function readTarSource(path: string, compression: Compression, work: string, options: ImportOptions): Promise<ImportSource> {
  const survey = await surveyTar(path, compression, work, options.signal);
  if (memberOf(survey, 'oci-layout') && memberOf(survey, 'index.json')) return readOciArchive(survey, work, options);
  if (memberOf(survey, 'manifest.json')) return readDockerArchive(survey, work, options);
  if (memberOf(survey, 'metadata.json') && (survey.tree.resolve('box.img') || memberOf(survey, 'Vagrantfile'))) return readVagrantBox(survey, work, options);
  const file = join(work, 'rootfs.tar');
  if (survey.copied) await rename(survey.plain, file);
  // A plain tar is read twice: surveyed in place, then copied into the work directory.
  else if ((await unpackFile(path, file, { decompress: false, signal: options.signal })).sha256 !== survey.sha256) throw new Refusal('it changed while it was read');
  return rootfs('tarball', [{ file, ...survey.changes }], survey.tree, {}, survey, options);
}

/** The kept data of the top-level member `name` of a surveyed archive. */
function member(survey: Survey, name: string): Buffer {
  const node = memberOf(survey, name);
  if (!node) throw new Refusal(`it has no ${name}`);
  return keptData(survey, node, name);
}

/** A Vagrant box (metadata.json, Vagrantfile, box.img): its box.img, a self-contained qcow2. */
async function readVagrantBox(survey: Survey, work: string, options: ImportOptions): Promise<ImportSource> {
  const metadata = parseObject(member(survey, 'metadata.json'), 'metadata.json');
  if (metadata.provider !== 'libvirt') throw new UsageProblem(`it is a Vagrant box for the ${shown(String(metadata.provider), 40)} provider; boxbuild imports Vagrant boxes of the libvirt provider (qcow2) only`);
  if (metadata.format !== 'qcow2') throw new Refusal(`its metadata.json names the disk format ${shown(String(metadata.format), 40)}, not qcow2`);
  const image = memberOf(survey, 'box.img');
  if (!image) throw new Refusal('it has no box.img file');
  const path = join(work, 'box.img');
  await extractMembers(survey, new Map([[image.entry!, path]]), options.signal);
  if (survey.copied) await rm(survey.plain, { force: true });
  const { format } = await selfContainedImage(path, 'its box.img', 'boxUnavailable').catch((error: BoxbuildError) => {
    throw new Refusal(error.message, { cause: error });
  });
  if (format !== 'qcow2') throw new Refusal('its box.img is not a qcow2 image');
  return { kind: 'disk', format, path, what: 'Vagrant box', sha256: survey.sha256, size: survey.size };
}

function parseObject(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new Refusal(`${what} is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Refusal(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** An OCI archive: an OCI layout in a tar, its blobs read out of it. */
async function readOciArchive(survey: Survey, work: string, options: ImportOptions): Promise<ImportSource> {
  checkLayoutVersion(member(survey, 'oci-layout'));
  const blob = (digest: string, what: string) => {
    const node = memberOf(survey, `blobs/sha256/${hexOf(digest)}`);
    if (!node) throw new Refusal(`${what} is not in the archive`);
    return node;
  };
  const store: BlobStore = {
    small: async (descriptor, what) => {
      if (descriptor.size > JSON_MAX) throw new Refusal(`${what} is larger than ${JSON_MAX >> 20} MiB`);
      return verifyBlob(keptData(survey, blob(descriptor.digest, what), what), descriptor, what);
    },
  };
  const image = await readOciImage(store, member(survey, 'index.json'), options.arch);
  const spool = await spoolDirectory(work);
  const wanted = new Map<number, string>();
  const files = new Map<string, string>();
  for (const [at, layer] of image.layers.entries()) {
    const node = blob(layer.digest, `layer ${at + 1} (${layer.digest})`);
    if (node.size !== layer.size) throw new Refusal(`layer ${at + 1} (${layer.digest}) is ${node.size} bytes, not the ${layer.size} its descriptor says`);
    const file = join(spool, hexOf(layer.digest));
    wanted.set(node.entry!, file);
    files.set(layer.digest, file);
  }
  await extractMembers(survey, wanted, options.signal);
  if (survey.copied) await rm(survey.plain, { force: true });
  const inputs = image.layers.map((layer, at) => ({ ...ociInput(layer, at), blob: async () => ({ path: files.get(layer.digest)!, owned: true }) }));
  const { layers, tree } = await imageLayers(inputs, image.config, work, options);
  return rootfs('OCI archive', layers, tree, image.config, survey, options);
}

/** A Docker archive (`docker save`): manifest.json names each image's config and layers by path. */
async function readDockerArchive(survey: Survey, work: string, options: ImportOptions): Promise<ImportSource> {
  const memberAt = (path: string, what: string) => {
    const node = memberOf(survey, pathParts(path, what).join('/'));
    if (!node) throw new Refusal(`${what} "${shown(path)}" is not in the archive`);
    return node;
  };
  /** A digest a member's path names (HEX.json, blobs/sha256/HEX, HEX/layer.tar is not one: it names a layer ID). */
  const namedDigest = (path: string) => /(?:^|\/)(?:blobs\/sha256\/([0-9a-f]{64})|([0-9a-f]{64})\.json)$/.exec(pathParts(path, 'path').join('/'))?.slice(1).find(Boolean);
  const images = readDockerManifest(member(survey, 'manifest.json')).map((image, at) => {
    const what = `the config of image ${at + 1} of manifest.json`;
    const bytes = keptData(survey, memberAt(image.config, what), what);
    const digest = namedDigest(image.config);
    if (digest && sha256Hex(bytes) !== digest) throw new Refusal(`${what} (${shown(image.config)}) does not match the digest its name says`);
    return { image, config: readConfig(bytes) };
  });
  const { image, config } = chooseDockerImage(images, options.arch);
  if (config.diffIds?.length !== image.layers.length) throw new Refusal(`its image config's rootfs.diff_ids do not list its ${image.layers.length} layers`);
  const spool = await spoolDirectory(work);
  const wanted = new Map<number, string>();
  const inputs = image.layers.map((path, at): LayerInput => {
    const node = memberAt(path, `layer ${at + 1}`);
    const file = wanted.get(node.entry!) ?? join(spool, `${wanted.size + 1}`);
    wanted.set(node.entry!, file);
    const digest = namedDigest(path);
    return { key: file, where: `layer ${at + 1} (${shown(path)})`, digest: digest && `sha256:${digest}`, blob: async () => ({ path: file, owned: true }) };
  });
  await extractMembers(survey, wanted, options.signal);
  if (survey.copied) await rm(survey.plain, { force: true });
  const merged = await imageLayers(inputs, config, work, options);
  return rootfs('Docker archive', merged.layers, merged.tree, config, survey, options);
}

async function spoolDirectory(work: string): Promise<string> {
  const dir = join(work, 'spool');
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  return dir;
}

/** A layer to decompress: `key` tells layers of the same blob, `where` names it in messages; its digest and size when known. */
interface LayerInput {
  key: string;
  where: string;
  digest?: string;
  size?: number;
  /** Its file, and whether it is the work directory's (removed once decompressed). */
  blob: () => Promise<{ path: string; owned: boolean }>;
}

const ociInput = (layer: Descriptor, at?: number) => ({ key: layer.digest, where: `layer ${(at ?? 0) + 1} (${layer.digest})`, digest: layer.digest, size: layer.size });

/**
 * Decompresses an image's layers into plain tars in work/layers, each checked against its digest
 * and size (when it has them) and its diff_id in the config, then checks them in order as one
 * merged tree.
 */
async function imageLayers(inputs: LayerInput[], config: ImageConfig, work: string, options: ImportOptions): Promise<{ layers: Layer[]; tree: MergedTree }> {
  const dir = join(work, 'layers');
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  const plain = new Map<string, { file: string; sha256: string }>();
  const files: string[] = [];
  for (const [at, input] of inputs.entries()) {
    const { where } = input;
    let done = plain.get(input.key);
    if (!done) {
      const blob = await input.blob();
      const file = join(dir, `${at + 1}.tar`);
      const unpacked = await within(where, () => unpackFile(blob.path, file, { decompress: true, signal: options.signal }));
      if (input.size !== undefined && unpacked.size !== input.size) throw new Refusal(`${where} is ${unpacked.size} bytes, not the ${input.size} its descriptor says`);
      if (input.digest && unpacked.sha256 !== hexOf(input.digest)) throw new Refusal(`${where} does not match its digest`);
      if (blob.owned) await rm(blob.path, { force: true });
      done = { file, sha256: unpacked.plainSha256 };
      plain.set(input.key, done);
    }
    const diffId = config.diffIds?.[at];
    if (diffId && hexOf(diffId) !== done.sha256) throw new Refusal(`${where}: its uncompressed tar does not match its diff_id ${diffId} in the image config`);
    files.push(done.file);
  }
  const tree = new MergedTree();
  const layers: Layer[] = [];
  for (const [at, file] of files.entries()) {
    const layer = await within(inputs[at]!.where, () => readLayer(file, tree, at, options.signal));
    if (layer) layers.push(layer);
  }
  if (layers.length === 0) throw new Refusal('all its layers are empty');
  return { layers, tree };
}

/** An OCI layout directory (also one skopeo copied an image reference into, in `work`). */
async function readLayoutDirectory(root: string, work: string, options: ImportOptions, what: 'OCI layout' | 'image reference', tag: string | undefined, owned: boolean): Promise<ImportSource> {
  checkLayoutVersion(await readLayoutFile(root, join(root, 'oci-layout'), 'oci-layout'));
  const store = new LayoutStore(root);
  const image = await readOciImage(store, await readLayoutFile(root, join(root, 'index.json'), 'index.json'), options.arch, tag);
  const inputs = image.layers.map((layer, at) => {
    const input = ociInput(layer, at);
    return { ...input, blob: async () => ({ path: await store.blobFile(layer.digest, input.where), owned }) };
  });
  const { layers, tree } = await imageLayers(inputs, image.config, work, options);
  return rootfs(what, layers, tree, image.config, { sha256: hexOf(image.digest), size: image.size }, options);
}

/** A root file system directory: one plain tar of it, made by GNU tar (which follows no symlink without -h). */
async function readDirectory(path: string, work: string, options: ImportOptions): Promise<ImportSource> {
  const file = join(work, 'rootfs.tar');
  const end = await runChild('tar', ['--numeric-owner', '--one-file-system', '--sort=name', '-C', path, '-cf', file, '.'], { signal: options.signal });
  if (end.startError?.code === 'ENOENT') throw new BoxbuildError('boxUnavailable', `importing a directory needs GNU tar; please install it`, { cause: end.startError });
  // Its first complaint (a file it cannot read): its last line only says that it failed.
  const complaint = end.stderr.split('\n').find((line) => line.trim() && !/Exiting with failure status/.test(line));
  if (end.exitCode !== 0) throw new Refusal(`tar could not read it whole: ${complaint ?? lastWords(end)}`);
  const tree = new MergedTree();
  const layer = await within('its tar', () => readLayer(file, tree, 0, options.signal));
  if (!layer) throw new Refusal('it is empty');
  return rootfs('directory', [layer], tree, {}, await hashFile(file, options.signal), options);
}

/** An image reference: copied by skopeo into an OCI layout in `work`, then read as one. */
async function readReference(source: string, work: string, options: ImportOptions): Promise<ImportSource> {
  const layout = join(work, 'pulled');
  const tmp = join(work, 'skopeo-tmp');
  await mkdir(tmp, { mode: PRIVATE_DIR });
  const arch = options.arch ?? hostArch();
  const args = ['copy', '--quiet', '--override-os', 'linux', '--override-arch', ociArch(arch), source, `oci:${layout}:import`];
  const end = await runChild('skopeo', args, { signal: options.signal, env: { ...process.env, TMPDIR: tmp } });
  if (end.startError?.code === 'ENOENT') throw usageError(`importing ${shown(source)} needs skopeo: install Debian's "skopeo" package (apt-get install skopeo)`);
  if (end.exitCode !== 0) throw new Refusal(`skopeo could not copy it: ${lastWords(end)}`);
  await rm(tmp, { recursive: true, force: true });
  return readLayoutDirectory(layout, work, options, 'image reference', 'import', true);
}

/** Where an architecture was found, and what it is (a description when boxbuild runs none such). */
interface FoundArch {
  arch: Arch | string;
  from: string;
}

/** The architecture of the programs of a merged tree: the ELF header of the first of ELF_PROGRAMS that is an ELF file. */
function programArch(tree: MergedTree): FoundArch | undefined {
  for (const program of ELF_PROGRAMS) {
    const node = tree.resolve(program);
    if (node?.kind === 'file' && node.elf) return { arch: node.elf, from: `its /${program}` };
  }
  return undefined;
}

/** The architecture of an image: its config's, else its programs'; --arch must agree, and is needed when neither tells. */
function imageArch(config: ImageConfig, tree: MergedTree, requested: Arch | undefined): Arch {
  const named = configArch(config);
  const found: FoundArch | undefined = named ? { arch: named, from: 'its image config' } : programArch(tree);
  if (found && !isArch(found.arch)) throw new UsageProblem(`it is for ${found.arch} (${found.from}), which boxbuild does not run`);
  if (found && requested && found.arch !== requested) throw new UsageProblem(`it is a ${found.arch} image (${found.from}), not ${requested} as --arch says`);
  if (found) return found.arch as Arch;
  if (requested) return requested;
  throw new UsageProblem(`boxbuild cannot tell its architecture (no image config names it, and none of /${ELF_PROGRAMS.join(', /')} is an ELF program): name it with --arch`);
}

function rootfs(what: RootfsWhat, layers: Layer[], tree: MergedTree, config: ImageConfig, bytesOf: { sha256: string; size: number }, options: ImportOptions): ImportSource {
  const arch = imageArch(config, tree, options.arch);
  const { bytes, files } = tree.totals();
  return { kind: 'rootfs', what, layers, arch, bytes, files, sha256: bytesOf.sha256, size: bytesOf.size };
}
