import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, link, rename, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BoxbuildError } from '../../errors.js';
import { selfContainedImage } from '../../qemu/image-file.js';
import type { Arch } from '../arch.js';
import { type BoxFiles, type BoxManifest, type InstalledBox, type ManifestFile, type OciRecord, boxTmpDir, freshWorkDir, installVersion, readManifest } from '../cache.js';
import type { NetContext, SmallFile } from '../download.js';
import { Sha256Stream, hashFile } from '../hash.js';
import { writeJsonFile } from '../json-file.js';
import { PRIVATE_FILE } from '../modes.js';
import { verifySignature } from '../openpgp.js';
import { type BoxLayout, type Descriptor, MAX_CONFIG_BYTES, hexOf, isIndex, manifestOf, readBoxConfig, readBoxManifest, readSignatureManifest, signatureTag } from './artifact.js';
import type { FetchedManifest } from './client.js';
import { PullSource } from './source.js';
import { type OciReference, formatReference, manifestRef } from './reference.js';

/** A box variant published in an OCI registry, as the box registry names it. */
export interface OciVariant {
  cacheRoot: string;
  name: string;
  arch: Arch;
  ref: OciReference;
  /** The binary OpenPGP key the box's signature must verify with, when the registry pins one. */
  signedBy?: Buffer;
  /** This boxbuild's guest files: a box boxbuild made carries its own, and runs only with the boxbuild that has the same. */
  guestDigest: string;
}

const CONFIG_BLOB: SmallFile = { what: 'box config', maxBytes: MAX_CONFIG_BYTES };
const SIGNATURE_BLOB: SmallFile = { what: 'signature', maxBytes: 64 << 10 };

const refused = (variant: OciVariant, why: string, cause?: unknown) =>
  new BoxbuildError('boxUnavailable', `box ${variant.name} (${variant.arch}) from ${formatReference(variant.ref)}: ${why}`, { cause });

/** The guest files of a box boxbuild made, when they are not this boxbuild's (it runs only with the boxbuild that made it). */
function madeElsewhere(variant: OciVariant, sources: Record<string, string>): string | undefined {
  const madeBy = sources['boxbuild-guest'];
  return madeBy !== undefined && madeBy !== variant.guestDigest ? madeBy : undefined;
}

/** Runs a check of what the registry sent; its error becomes one line naming the box. */
function checked<T>(variant: OciVariant, what: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw refused(variant, `the ${what} is refused: ${(error as Error).message}`, error);
  }
}

/** The arch's manifest: the one the reference names, or the index entry of the arch. */
async function archManifest(variant: OciVariant, source: PullSource): Promise<{ top: string; manifest: FetchedManifest }> {
  const top = await source.manifest(manifestRef(variant.ref));
  if (!checked(variant, 'manifest', () => isIndex(top.bytes))) return { top: top.digest, manifest: top };
  const entry = checked(variant, 'index', () => manifestOf(top.bytes, variant.arch));
  return { top: top.digest, manifest: await source.manifest(entry.digest) };
}

/** The signature the registry's key must have made of the manifest: one line when it is missing or does not verify. */
async function checkSignature(variant: OciVariant, source: PullSource, manifest: FetchedManifest, key: Buffer, signal?: AbortSignal): Promise<void> {
  const signed = await source.findManifest(signatureTag(manifest.digest));
  if (!signed) throw refused(variant, `the box registry pins an OpenPGP key, but ${manifest.digest} carries no signature (tag ${signatureTag(manifest.digest)})`);
  const layer = checked(variant, 'signature manifest', () => readSignatureManifest(signed.bytes, manifest.digest));
  const signature = await source.smallBlob(layer, SIGNATURE_BLOB);
  await verifySignature(`box ${variant.name} (${variant.arch}) from ${formatReference(variant.ref)}`, key, manifest.bytes, signature, signal);
}

/** Appends `size` bytes at `offset` of a file to `to` when they hash to `digest` (a disk part the previous version has). */
async function appendPart(from: string, offset: number, size: number, digest: string, to: string): Promise<boolean> {
  const { size: before } = await stat(to).catch(() => ({ size: 0 }));
  const hash = new Sha256Stream();
  const bytes = createReadStream(from, { start: offset, end: offset + size - 1, highWaterMark: 1 << 20 });
  bytes.on('data', (chunk) => hash.write(chunk));
  await pipeline(bytes, createWriteStream(to, { flags: 'a', mode: PRIVATE_FILE }));
  if (`sha256:${await hash.digest()}` === digest) return true;
  await truncate(to, before);
  return false;
}

/** Where a part lies in the previous version's disk, when it had it. */
function previousPart(previous: InstalledBox | undefined, digest: string): { path: string; offset: number; size: number } | undefined {
  const system = previous?.manifest.files.system;
  let offset = 0;
  for (const part of previous?.manifest.oci?.parts ?? []) {
    if (part.digest === digest && system) return { path: join(previous!.dir, system.name), offset, size: part.size };
    offset += part.size;
  }
  return undefined;
}

/**
 * The system disk, part after part into one file in the variant's tmp directory, where a cut pull
 * resumes it: each part taken from the previous version's disk or downloaded, verified as it
 * streams; then the whole checked against the config's sha256 and moved to `to`.
 */
async function assembleDisk(variant: OciVariant, source: PullSource, layout: BoxLayout, disk: ManifestFile, to: string, previous: InstalledBox | undefined): Promise<void> {
  const partial = join(boxTmpDir(variant.cacheRoot, variant.name, variant.arch), `${disk.sha256}.disk.part`);
  const { size: have } = await stat(partial).catch(() => ({ size: 0 }));
  let offset = 0;
  for (const [index, part] of layout.systemParts.entries()) {
    // Parts an earlier pull wrote whole were verified then (and the whole disk is checked below).
    if (have < offset + part.size) {
      const old = have <= offset ? previousPart(previous, part.digest) : undefined;
      if (!(old && (await appendPart(old.path, old.offset, old.size, part.digest, partial)))) {
        await source.downloadBlob(part.digest, partial, `${disk.name} part ${index + 1}/${layout.systemParts.length}`, offset);
      }
    }
    offset += part.size;
  }
  const actual = await hashFile(partial);
  if (actual !== disk.sha256) {
    await rm(partial, { force: true });
    throw refused(variant, `its system disk's parts join into sha256 ${actual}, but its config says ${disk.sha256}`);
  }
  await rename(partial, to);
}

/** One whole file: hard-linked from the previous version when it has the same, else downloaded. */
async function fetchFile(source: PullSource, tmp: string, blob: Descriptor, file: ManifestFile, staging: string, previous: InstalledBox | undefined): Promise<void> {
  const to = join(staging, file.name);
  const old = Object.values(previous?.manifest.files ?? {}).find((candidate) => candidate?.sha256 === file.sha256);
  if (old) {
    const from = join(previous!.dir, old.name);
    await link(from, to).catch(() => copyFile(from, to));
    return;
  }
  const partial = join(tmp, `${hexOf(blob.digest)}.part`);
  await source.downloadBlob(blob.digest, partial, file.name);
  await rename(partial, to);
}

/**
 * Pulls a box variant from its registry and installs it as a new version (atomically, as a
 * download is). Every blob is verified against its digest as it streams; what the previous
 * version has is taken from it. When the registry serves the manifest the previous version came
 * from, only the record of what the reference names now is updated.
 */
export async function installOci(variant: OciVariant, ctx: NetContext, previous?: InstalledBox): Promise<InstalledBox> {
  const source = new PullSource(ctx, variant.ref);
  const { top, manifest } = await archManifest(variant, source);
  const reference = formatReference(variant.ref);
  if (previous?.manifest.oci?.manifest === manifest.digest && previous.manifest.oci.reference === reference && !madeElsewhere(variant, previous.manifest.sources)) {
    const updated: BoxManifest = { ...previous.manifest, oci: { ...previous.manifest.oci, digest: top } };
    await writeJsonFile(join(previous.dir, 'box.json'), updated);
    return { dir: previous.dir, manifest: (await readManifest(previous.dir)) ?? updated };
  }
  const layout = checked(variant, 'manifest', () => readBoxManifest(manifest.bytes, ctx.net.maxBytes));
  if (variant.signedBy) await checkSignature(variant, source, manifest, variant.signedBy, ctx.signal);
  const configBytes = await source.smallBlob(layout.config, CONFIG_BLOB);
  const published = checked(variant, 'config', () => readBoxConfig(configBytes, layout, variant.arch));
  const madeBy = madeElsewhere(variant, published.sources);
  if (madeBy) {
    throw refused(variant, `it was made by another boxbuild version (its guest files are ${madeBy.slice(0, 19)}…, this boxbuild's ${variant.guestDigest.slice(0, 19)}…); publish it again with this version ("boxbuild box push") or make it here ("boxbuild box make ${variant.name}")`);
  }
  const tmp = boxTmpDir(variant.cacheRoot, variant.name, variant.arch);
  const staging = await freshWorkDir(variant.cacheRoot, variant.name, variant.arch, 'staging-');
  try {
    const files = published.files as BoxFiles;
    for (const role of ['packages', 'kernel', 'initrd'] as const) {
      const blob = layout.files[role];
      if (blob) await fetchFile(source, tmp, blob, files[role]!, staging, previous);
    }
    if (files.system) {
      const disk = join(staging, files.system.name);
      await assembleDisk(variant, source, layout, files.system, disk, previous);
      await selfContainedImage(disk, `box ${variant.name} (${variant.arch}) from ${reference}: its system disk`, 'boxUnavailable');
    }
    const parts = layout.systemParts.map(({ digest, size }) => ({ digest, size }));
    const record: OciRecord = { reference, digest: top, manifest: manifest.digest, ...(parts.length > 0 ? { parts } : {}) };
    return await installVersion(variant.cacheRoot, staging, {
      name: variant.name,
      arch: variant.arch,
      version: published.version,
      files,
      sources: { ...published.sources, oci: `${reference}@${manifest.digest}` },
      oci: record,
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Whether the installed version is what the reference names: a pinned digest is compared with
 * no request; a tag costs one HEAD request (a GET when the registry does not say the digest).
 */
export async function isOciCurrent(variant: OciVariant, installed: InstalledBox, ctx: NetContext): Promise<boolean> {
  const record = installed.manifest.oci;
  if (!record || record.reference !== formatReference(variant.ref)) return false;
  if (madeElsewhere(variant, installed.manifest.sources)) return false;
  if (variant.ref.digest) return record.digest === variant.ref.digest;
  return (await new PullSource(ctx, variant.ref).manifestDigest(variant.ref.tag!)) === record.digest;
}
