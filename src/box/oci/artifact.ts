import { shown } from '../../util/shown.js';
import { ARCHES, type Arch, isArch } from '../arch.js';
import { type BoxFiles, type BoxManifest, type FileRole, isManifest } from '../cache.js';
import { isObject } from '../json-file.js';
import { DIGEST, ociArch } from './reference.js';

/*
 * A box as an OCI artifact: an index with one image manifest per architecture. A manifest's config
 * is the box's box.json (its files by sha256, its provenance); its layers are the kernel, the
 * initrd, the package list and the system disk in parts, each a blob named by its digest.
 */

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.boxbuild.box.config.v1+json',
  /** One part of the system disk: the parts, in layer order, are the disk. */
  systemPart: 'application/vnd.boxbuild.box.system.part.v1',
  signature: 'application/vnd.boxbuild.box.signature.v1+pgp',
} as const;

export const ARTIFACT_TYPE = 'application/vnd.boxbuild.box.v1';
export const SIGNATURE_ARTIFACT_TYPE = 'application/vnd.boxbuild.box.signature.v1';

/** The whole files a manifest carries, each a layer of its own. */
const WHOLE_FILES = ['kernel', 'initrd', 'packages'] as const satisfies readonly FileRole[];
type WholeFile = (typeof WHOLE_FILES)[number];
const wholeFileType = (role: WholeFile) => `application/vnd.boxbuild.box.${role}.v1`;

/** The most a config may be, and the most layers a manifest may have (a 16 GiB disk in 64 MiB parts is 256). */
export const MAX_CONFIG_BYTES = 1 << 20;
export const MAX_LAYERS = 4096;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

/** What a box's manifest names, checked: its config, its whole files and its system disk's parts. */
export interface BoxLayout {
  config: Descriptor;
  files: Partial<Record<WholeFile, Descriptor>>;
  systemParts: Descriptor[];
}

/** The hex of a `sha256:` digest. */
export const hexOf = (digest: string) => digest.slice('sha256:'.length);

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new Error(`the ${what} is not JSON (${(error as Error).message})`, { cause: error });
  }
  if (!isObject(value)) throw new Error(`the ${what} is not a JSON object`);
  return value;
}

function descriptor(value: unknown, what: string, maxBytes: number): Descriptor {
  if (!isObject(value) || typeof value.mediaType !== 'string' || typeof value.digest !== 'string' || !Number.isSafeInteger(value.size)) throw new Error(`${what} is not a descriptor (mediaType, digest, size)`);
  if (!DIGEST.test(value.digest)) throw new Error(`${what} has digest "${shown(value.digest)}", not a sha256 digest`);
  const size = value.size as number;
  if (size < 0 || size > maxBytes) throw new Error(`${what} says it is ${size} bytes; the most it may be is ${maxBytes}`);
  return value as unknown as Descriptor;
}

/** Whether the manifest bytes are an index (else an image manifest), by their own mediaType. */
export function isIndex(bytes: Buffer): boolean {
  return parseJson(bytes, 'manifest').mediaType === MEDIA_TYPES.index;
}

/** How many of the architectures an index has its error names. */
const SHOWN_ARCHES = 10;

/** The index entry of `arch`'s manifest; one line when the index has none. */
export function manifestOf(index: Buffer, arch: Arch): Descriptor {
  const doc = parseJson(index, 'index');
  if (doc.schemaVersion !== 2 || !Array.isArray(doc.manifests) || doc.manifests.length > MAX_LAYERS) throw new Error('the index is not an OCI image index');
  const entries = doc.manifests.map((entry, index) => descriptor(entry, `index entry ${index + 1}`, 4 << 20));
  const wanted = ociArch(arch);
  const found = entries.filter((entry) => entry.mediaType === MEDIA_TYPES.manifest && entry.platform?.architecture === wanted && entry.platform.os === 'linux');
  if (found.length === 0) {
    const have = [...new Set(entries.flatMap(({ platform }) => (typeof platform?.architecture === 'string' ? [shown(platform.architecture, 20)] : [])))];
    const listed = have.length > SHOWN_ARCHES ? [...have.slice(0, SHOWN_ARCHES), '…'] : have;
    throw new Error(`it has no box for ${arch} (linux/${wanted}); it has: ${listed.join(', ') || 'nothing for any platform'}`);
  }
  if (found.length > 1) throw new Error(`it names ${found.length} manifests for linux/${wanted}`);
  return found[0]!;
}

/**
 * Reads a box's image manifest, refusing what a hostile registry could use against the cache: a
 * blob named twice, more layers than a box has, a layer larger than `maxBytes` or a disk larger
 * than that in all, a layer of a kind boxbuild does not know.
 */
export function readBoxManifest(bytes: Buffer, maxBytes: number): BoxLayout {
  const doc = parseJson(bytes, 'manifest');
  if (doc.schemaVersion !== 2 || (doc.mediaType !== undefined && doc.mediaType !== MEDIA_TYPES.manifest)) throw new Error('it is not an OCI image manifest');
  const config = descriptor(doc.config, 'its config', MAX_CONFIG_BYTES);
  if (config.mediaType !== MEDIA_TYPES.config) throw new Error(`its config is "${shown(config.mediaType)}", not a boxbuild box (${MEDIA_TYPES.config})`);
  if (!Array.isArray(doc.layers) || doc.layers.length > MAX_LAYERS) throw new Error(`it has ${Array.isArray(doc.layers) ? doc.layers.length : 'no list of'} layers; a box has at most ${MAX_LAYERS}`);
  const layout: BoxLayout = { config, files: {}, systemParts: [] };
  const seen = new Set([config.digest]);
  let systemBytes = 0;
  for (const [index, raw] of doc.layers.entries()) {
    const layer = descriptor(raw, `layer ${index + 1}`, maxBytes);
    if (seen.has(layer.digest)) throw new Error(`it names blob ${layer.digest} twice`);
    seen.add(layer.digest);
    const role = WHOLE_FILES.find((candidate) => wholeFileType(candidate) === layer.mediaType);
    if (role) {
      if (layout.files[role]) throw new Error(`it has two ${role} layers`);
      layout.files[role] = layer;
    } else if (layer.mediaType === MEDIA_TYPES.systemPart) {
      systemBytes += layer.size;
      if (systemBytes > maxBytes) throw new Error(`its system disk parts add up to more than ${maxBytes} bytes, the limit for one file`);
      layout.systemParts.push(layer);
    } else {
      throw new Error(`layer ${index + 1} is "${shown(layer.mediaType)}", which is no part of a box`);
    }
  }
  if (!layout.files.kernel || !layout.files.initrd) throw new Error('it has no kernel or no initrd layer');
  return layout;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/**
 * Reads a box's config (its box.json as published) and checks it against the layers: every file
 * it names has the digest and size of its layer, safe distinct names, the architecture asked for.
 */
export function readBoxConfig(bytes: Buffer, layout: BoxLayout, arch: Arch): Pick<BoxManifest, 'version' | 'files' | 'sources'> {
  const config = parseJson(bytes, 'config');
  if (!isManifest(config)) throw new Error('its config is not a box manifest');
  if (config.arch !== arch || !isArch(config.arch)) throw new Error(`its config is of a ${config.arch} box, not ${arch}`);
  const files = config.files;
  if (Object.keys(files).some((role) => !(WHOLE_FILES as readonly string[]).includes(role) && role !== 'system')) throw new Error('its config names a file of no known kind');
  const names = new Set<string>();
  for (const [role, file] of Object.entries(files)) {
    if (!SAFE_NAME.test(file.name) || file.name === 'box.json' || names.has(file.name)) throw new Error(`its config names the ${role} "${shown(file.name)}", not a file name of its own`);
    names.add(file.name);
  }
  for (const role of WHOLE_FILES) {
    const layer = layout.files[role];
    const file = files[role];
    if (!file !== !layer) throw new Error(`its config and its layers disagree on whether there is a ${role}`);
    if (file && layer && (`sha256:${file.sha256}` !== layer.digest || file.size !== layer.size)) throw new Error(`its config's ${role} is not its ${role} layer`);
  }
  const partBytes = layout.systemParts.reduce((sum, part) => sum + part.size, 0);
  if (!files.system !== (layout.systemParts.length === 0) || (files.system && files.system.size !== partBytes)) throw new Error('its config\'s system disk is not what its parts add up to');
  return { version: config.version, files, sources: config.sources };
}

/** The config a box is published with: its box.json without what only this cache knows. */
export function boxConfig(manifest: BoxManifest): Buffer {
  const { name, arch, version, files, sources } = manifest;
  return Buffer.from(JSON.stringify({ name, arch, version, files, sources }));
}

/** The image manifest of a box: its config, then its whole files, then its disk's parts. */
export function boxManifestBytes(config: Descriptor, files: BoxFiles, blobs: Partial<Record<WholeFile, Descriptor>>, systemParts: Descriptor[], arch: Arch): Buffer {
  const layers = [
    ...WHOLE_FILES.flatMap((role) => (blobs[role] ? [{ ...blobs[role]!, mediaType: wholeFileType(role), annotations: { 'org.opencontainers.image.title': files[role]!.name } }] : [])),
    ...systemParts.map((part) => ({ ...part, mediaType: MEDIA_TYPES.systemPart })),
  ];
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    artifactType: ARTIFACT_TYPE,
    config: { ...config, mediaType: MEDIA_TYPES.config },
    layers,
    annotations: { 'org.boxbuild.arch': arch },
  };
  return Buffer.from(JSON.stringify(manifest));
}

/** An index of manifests, one per architecture. */
export function indexBytes(entries: { arch: Arch; manifest: Descriptor }[]): Buffer {
  const manifests = entries.map(({ arch, manifest }) => ({ mediaType: MEDIA_TYPES.manifest, digest: manifest.digest, size: manifest.size, artifactType: ARTIFACT_TYPE, platform: { architecture: ociArch(arch), os: 'linux' } }));
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.index, artifactType: ARTIFACT_TYPE, manifests }));
}

/** The entries of an existing index that stay when `arches` are pushed anew (to add an architecture to a published box). */
export function otherArchEntries(index: Buffer, arches: Arch[]): { arch: Arch; manifest: Descriptor }[] {
  const doc = parseJson(index, 'index');
  if (!Array.isArray(doc.manifests)) return [];
  const replaced = new Set(arches.map(ociArch));
  return doc.manifests.flatMap((entry, index) => {
    const found = descriptor(entry, `index entry ${index + 1}`, 4 << 20);
    const arch = ARCHES.find((candidate) => ociArch(candidate) === found.platform?.architecture);
    return arch && !replaced.has(found.platform!.architecture) && found.mediaType === MEDIA_TYPES.manifest ? [{ arch, manifest: found }] : [];
  });
}

/** The tag a box manifest's signature is published under (the tag schema of cosign and the OCI referrers fallback). */
export const signatureTag = (manifestDigest: string) => `sha256-${hexOf(manifestDigest)}.sig`;

/** The manifest that carries a detached OpenPGP signature of a box manifest. */
export function signatureManifestBytes(signature: Descriptor, subject: Descriptor, emptyConfig: Descriptor): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.manifest,
      artifactType: SIGNATURE_ARTIFACT_TYPE,
      config: { ...emptyConfig, mediaType: 'application/vnd.oci.empty.v1+json' },
      layers: [{ ...signature, mediaType: MEDIA_TYPES.signature }],
      subject: { mediaType: MEDIA_TYPES.manifest, digest: subject.digest, size: subject.size },
    }),
  );
}

/** The signature blob a signature manifest names, checked to be one small layer about `subject`. */
export function readSignatureManifest(bytes: Buffer, subject: string): Descriptor {
  const doc = parseJson(bytes, 'signature manifest');
  const layers = Array.isArray(doc.layers) ? doc.layers : [];
  const layer = layers.length === 1 ? descriptor(layers[0], 'its signature', 64 << 10) : undefined;
  if (!layer || layer.mediaType !== MEDIA_TYPES.signature) throw new Error('the signature manifest does not carry one OpenPGP signature');
  if (!isObject(doc.subject) || doc.subject.digest !== subject) throw new Error('the signature manifest is about another manifest');
  return layer;
}
