import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { isWithin } from '../../util/file.js';
import { shown } from '../../util/shown.js';
import { ARCHES, type Arch } from '../arch.js';
import { isObject } from '../json-file.js';
import { DIGEST, ociArch } from '../oci/reference.js';
import { Refusal, UsageProblem } from './tree.js';

/*
 * The JSON of container images, read as hostile: OCI image layouts (index.json, nested indexes,
 * image manifests, configs; Docker's media types too) and Docker archives (`docker save`'s
 * manifest.json). Every JSON read is bounded, every blob checked against its digest.
 */

/** The most bytes a JSON document of an image may have. */
export const JSON_MAX = 4 << 20;
/** The most layers an image may have. */
export const MAX_LAYERS = 256;
/** How deep indexes may nest below index.json. */
export const MAX_INDEX_DEPTH = 4;
/** The most entries an index (or images a Docker archive) may list. */
const MAX_ENTRIES = 1024;

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);
const CONFIG_TYPES = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);
const REF_NAME = 'org.opencontainers.image.ref.name';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture?: string; os?: string; variant?: string };
  annotations?: Record<string, string>;
}

/** What boxbuild reads of an image config. */
export interface ImageConfig {
  architecture?: string;
  variant?: string;
  /** The sha256 digests of the layers' uncompressed tars, in order. */
  diffIds?: string[];
}

export const hexOf = (digest: string) => digest.slice('sha256:'.length);
export const sha256Hex = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

export function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  if (bytes.length > JSON_MAX) throw new Refusal(`${what} is larger than ${JSON_MAX >> 20} MiB`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new Refusal(`${what} is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (!isObject(value)) throw new Refusal(`${what} is not a JSON object`);
  return value;
}

/** A checked digest: sha256 only, which is all boxbuild verifies. */
export function checkDigest(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Refusal(`${what} has no digest`);
  if (DIGEST.test(value)) return value;
  const algorithm = /^([a-z0-9+._-]+):/.exec(value)?.[1];
  throw new Refusal(algorithm ? `${what} has a ${shown(algorithm, 20)} digest; boxbuild verifies sha256 digests only` : `${what} has the digest "${shown(value, 80)}", not sha256:HEX`);
}

export function descriptorOf(value: unknown, what: string): Descriptor {
  if (!isObject(value)) throw new Refusal(`${what} is not a descriptor`);
  const { mediaType, size, platform, annotations } = value;
  if (typeof mediaType !== 'string') throw new Refusal(`${what} has no mediaType`);
  if (!Number.isSafeInteger(size) || (size as number) < 0) throw new Refusal(`${what} has no valid size`);
  const descriptor: Descriptor = { mediaType, digest: checkDigest(value.digest, what), size: size as number };
  if (isObject(platform)) {
    const text = (key: string) => (typeof platform[key] === 'string' ? (platform[key] as string) : undefined);
    descriptor.platform = { architecture: text('architecture'), os: text('os'), variant: text('variant') };
  }
  if (isObject(annotations)) descriptor.annotations = Object.fromEntries(Object.entries(annotations).filter((pair): pair is [string, string] => typeof pair[1] === 'string'));
  return descriptor;
}

/** Checks bytes against a descriptor's size and digest. */
export function verifyBlob(bytes: Buffer, descriptor: Pick<Descriptor, 'digest' | 'size'>, what: string): Buffer {
  if (bytes.length !== descriptor.size) throw new Refusal(`${what} is ${bytes.length} bytes, not the ${descriptor.size} its descriptor says`);
  if (sha256Hex(bytes) !== hexOf(descriptor.digest)) throw new Refusal(`${what} does not match its digest ${descriptor.digest}`);
  return bytes;
}

/** Where the small blobs of an image (indexes, manifests, configs) come from, each checked against its descriptor. */
export interface BlobStore {
  small(descriptor: Descriptor, what: string): Promise<Buffer>;
}

/** The architecture an image config names, as boxbuild calls it; a description when boxbuild runs none such; undefined when it names none. */
export function configArch(config: ImageConfig): Arch | string | undefined {
  if (!config.architecture) return undefined;
  return ARCHES.find((arch) => ociArch(arch) === config.architecture) ?? `linux/${config.architecture}${config.variant ? `/${config.variant}` : ''}`;
}

export function readConfig(bytes: Buffer): ImageConfig {
  const doc = parseJson(bytes, 'the image config');
  const config: ImageConfig = {};
  if (typeof doc.architecture === 'string' && doc.architecture) config.architecture = doc.architecture;
  if (typeof doc.variant === 'string' && doc.variant) config.variant = doc.variant;
  if (typeof doc.os === 'string' && doc.os && doc.os !== 'linux') throw new UsageProblem(`it is an image for ${shown(doc.os, 40)}, not Linux`);
  if (doc.rootfs !== undefined) {
    const diffIds = isObject(doc.rootfs) ? doc.rootfs.diff_ids : undefined;
    if (!Array.isArray(diffIds) || diffIds.length > MAX_LAYERS) throw new Refusal('the image config has no valid rootfs.diff_ids list');
    config.diffIds = diffIds.map((id, at) => checkDigest(id, `the image config's diff_id ${at + 1}`));
  }
  return config;
}

/** An image manifest's config and layers. */
export function readManifest(bytes: Buffer): { config: Descriptor; layers: Descriptor[] } {
  const doc = parseJson(bytes, 'the image manifest');
  if (doc.schemaVersion !== 2) throw new Refusal('the image manifest is not of schemaVersion 2');
  if (doc.mediaType !== undefined && !MANIFEST_TYPES.has(doc.mediaType as string)) throw new Refusal(`the image manifest is of type ${shown(String(doc.mediaType), 80)}`);
  const config = descriptorOf(doc.config, "the image manifest's config");
  if (!CONFIG_TYPES.has(config.mediaType)) throw new UsageProblem(`it is not a container image (its config is of type ${shown(config.mediaType, 80)})`);
  if (!Array.isArray(doc.layers)) throw new Refusal('the image manifest has no layers list');
  if (doc.layers.length > MAX_LAYERS) throw new Refusal(`the image has ${doc.layers.length} layers; boxbuild imports at most ${MAX_LAYERS}`);
  if (doc.layers.length === 0) throw new Refusal('the image has no layers');
  return { config, layers: doc.layers.map((layer, at) => descriptorOf(layer, `layer ${at + 1} of the image manifest`)) };
}

/** How an index entry is named in a message: its platform, its tag, or its digest. */
function entryName(descriptor: Descriptor): string {
  const { platform, annotations, digest } = descriptor;
  if (platform?.architecture) return shown(`${platform.os ?? 'linux'}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`, 40);
  return annotations?.[REF_NAME] ? `tag ${shown(annotations[REF_NAME], 60)}` : digest.slice(0, 19);
}

const listed = (descriptors: Descriptor[]) => {
  const names = [...new Set(descriptors.map(entryName))];
  return names.length > 8 ? `${names.slice(0, 8).join(', ')} and ${names.length - 8} more` : names.join(', ');
};

/** The entry of an index to read: the only one, else the one of `arch`. */
function chooseEntry(candidates: Descriptor[], arch: Arch | undefined, what: string): Descriptor {
  if (candidates.length === 0) throw new Refusal(`${what} lists no image for Linux`);
  if (candidates.length === 1) return candidates[0]!;
  const tags = candidates.some((candidate) => !candidate.platform?.architecture && candidate.annotations?.[REF_NAME]);
  if (!arch) throw new UsageProblem(`it holds several images (${listed(candidates)}): choose one with --arch${tags ? ', or import oci:PATH:TAG' : ''}`);
  const matching = candidates.filter((candidate) => candidate.platform?.architecture === ociArch(arch));
  if (matching.length === 1) return matching[0]!;
  if (matching.length === 0) throw new UsageProblem(`it holds no image for ${arch} (linux/${ociArch(arch)}), only ${listed(candidates)}`);
  throw new UsageProblem(`it holds several images for ${arch} (${listed(matching)}): import one as oci:PATH:TAG`);
}

/** An image of an OCI layout: its manifest's digest and size, its config, its layers. */
export interface OciImage {
  digest: string;
  size: number;
  config: ImageConfig;
  layers: Descriptor[];
}

/**
 * The image an OCI layout's index.json leads to: through nested indexes (at most MAX_INDEX_DEPTH),
 * at each the only entry for Linux or else the one of `arch`; with `tag`, only the entries of
 * index.json named so count.
 */
export async function readOciImage(store: BlobStore, indexJson: Buffer, arch: Arch | undefined, tag?: string): Promise<OciImage> {
  let bytes = indexJson;
  let what = 'index.json';
  for (let depth = 0; ; depth++) {
    const index = parseJson(bytes, what);
    if (!Array.isArray(index.manifests) || index.manifests.length > MAX_ENTRIES) throw new Refusal(`${what} has no manifests list of at most ${MAX_ENTRIES} entries`);
    const seen = new Set<string>();
    const candidates = index.manifests
      .map((entry, at) => descriptorOf(entry, `entry ${at + 1} of ${what}`))
      .filter(({ mediaType, platform, annotations }) => {
        if (!INDEX_TYPES.has(mediaType) && !MANIFEST_TYPES.has(mediaType)) return false; // signatures, artifacts
        if ((platform?.os ?? 'linux') !== 'linux' || platform?.architecture === 'unknown') return false; // other systems, attestations
        return annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest' && (depth > 0 || tag === undefined || annotations?.[REF_NAME] === tag);
      })
      .filter(({ digest }) => !seen.has(digest) && !!seen.add(digest));
    if (depth === 0 && tag !== undefined && candidates.length === 0) throw new UsageProblem(`it has no image tagged ${shown(tag, 60)}`);
    const chosen = chooseEntry(candidates, arch, what);
    if (INDEX_TYPES.has(chosen.mediaType)) {
      if (depth >= MAX_INDEX_DEPTH) throw new Refusal(`its indexes nest deeper than ${MAX_INDEX_DEPTH}`);
      what = `the index ${chosen.digest}`;
      bytes = await store.small(chosen, what);
      continue;
    }
    const manifest = readManifest(await store.small(chosen, `the image manifest ${chosen.digest}`));
    const config = readConfig(await store.small(manifest.config, `the image config ${manifest.config.digest}`));
    if (config.diffIds && config.diffIds.length !== manifest.layers.length) throw new Refusal(`the image config lists ${config.diffIds.length} layers, its manifest ${manifest.layers.length}`);
    return { digest: chosen.digest, size: chosen.size, config, layers: manifest.layers };
  }
}

/** An image of a Docker archive's manifest.json: paths in the archive. */
export interface DockerImage {
  config: string;
  layers: string[];
  tags: string[];
}

export function readDockerManifest(bytes: Buffer): DockerImage[] {
  let value: unknown;
  if (bytes.length > JSON_MAX) throw new Refusal(`manifest.json is larger than ${JSON_MAX >> 20} MiB`);
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new Refusal(`manifest.json is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_ENTRIES) throw new Refusal(`manifest.json is not a list of 1 to ${MAX_ENTRIES} images`);
  return value.map((image, at) => {
    const what = `image ${at + 1} of manifest.json`;
    if (!isObject(image) || typeof image.Config !== 'string' || !Array.isArray(image.Layers)) throw new Refusal(`${what} has no Config and Layers`);
    if (image.Layers.length > MAX_LAYERS) throw new Refusal(`${what} has ${image.Layers.length} layers; boxbuild imports at most ${MAX_LAYERS}`);
    if (image.Layers.length === 0) throw new Refusal(`${what} has no layers`);
    if (!image.Layers.every((layer): layer is string => typeof layer === 'string')) throw new Refusal(`${what} has a layer that is not a path`);
    const tags = Array.isArray(image.RepoTags) ? image.RepoTags.filter((tag): tag is string => typeof tag === 'string') : [];
    return { config: image.Config, layers: image.Layers, tags };
  });
}

/** The image of a Docker archive to read, given each one's config: the only one, else the one of `arch`. */
export function chooseDockerImage(images: { image: DockerImage; config: ImageConfig }[], arch: Arch | undefined): { image: DockerImage; config: ImageConfig } {
  if (images.length === 1) return images[0]!;
  const names = images.map(({ image, config }) => shown(image.tags[0] ?? `linux/${config.architecture ?? 'unknown'}`, 60)).join(', ');
  if (!arch) throw new UsageProblem(`it holds several images (${names}): choose one with --arch, or save one image alone`);
  const matching = images.filter(({ config }) => configArch(config) === arch);
  if (matching.length === 1) return matching[0]!;
  throw new UsageProblem(`it holds ${matching.length === 0 ? 'no' : 'several'} images for ${arch} (it has ${names}): save one image alone`);
}

/** A file of an OCI layout directory that is not a symlink out of it; opened for reading. */
async function openInside(root: string, path: string, what: string) {
  let real: string;
  try {
    real = await realpath(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Refusal(`${what} is missing`, { cause: error });
    throw error;
  }
  if (!isWithin(real, await realpath(root))) throw new Refusal(`${what} is a symlink out of the layout`);
  const file = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  const info = await file.stat();
  if (!info.isFile()) {
    await file.close();
    throw new Refusal(`${what} is not a regular file`);
  }
  return { file, size: info.size, real };
}

/** A JSON file of at most JSON_MAX bytes of an OCI layout directory. */
export async function readLayoutFile(root: string, path: string, what: string): Promise<Buffer> {
  const { file, size } = await openInside(root, path, what);
  try {
    if (size > JSON_MAX) throw new Refusal(`${what} is larger than ${JSON_MAX >> 20} MiB`);
    const { buffer, bytesRead } = await file.read(Buffer.alloc(size), 0, size, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

/** The blobs of an OCI layout directory (blobs/sha256/HEX). */
export class LayoutStore implements BlobStore {
  constructor(readonly root: string) {}

  /** The path of a blob's file (checked: inside the layout, a regular file). */
  async blobFile(digest: string, what: string): Promise<string> {
    const { file, real } = await openInside(this.root, join(this.root, 'blobs', 'sha256', hexOf(digest)), what);
    await file.close();
    return real;
  }

  async small(descriptor: Descriptor, what: string): Promise<Buffer> {
    if (descriptor.size > JSON_MAX) throw new Refusal(`${what} is larger than ${JSON_MAX >> 20} MiB`);
    const bytes = await readLayoutFile(this.root, join(this.root, 'blobs', 'sha256', hexOf(descriptor.digest)), what);
    return verifyBlob(bytes, descriptor, what);
  }
}

/** Checks an OCI layout's oci-layout file. */
export function checkLayoutVersion(bytes: Buffer): void {
  const doc = parseJson(bytes, 'oci-layout');
  if (typeof doc.imageLayoutVersion !== 'string' || !/^1\./.test(doc.imageLayoutVersion)) throw new Refusal(`oci-layout names the layout version ${shown(String(doc.imageLayoutVersion), 40)}, not 1.x`);
}
