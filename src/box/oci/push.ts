import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BoxbuildError, usageError } from '../../errors.js';
import { runChild } from '../../util/child.js';
import { formatBytes } from '../../util/size.js';
import type { Arch } from '../arch.js';
import type { InstalledBox } from '../cache.js';
import type { NetContext } from '../download.js';
import { type Descriptor, MEDIA_TYPES, boxConfig, boxManifestBytes, indexBytes, isIndex, otherArchEntries, signatureManifestBytes, signatureTag } from './artifact.js';
import { RegistryClient, sha256Digest } from './client.js';
import { endpointsOf, loadRegistriesConf } from './mirrors.js';
import { type OciReference, formatReference } from './reference.js';
import { diskParts } from './parts.js';

export interface PushRequest {
  /** The installed versions to publish, one per architecture. */
  boxes: InstalledBox[];
  ref: OciReference;
  /** The system disk's part size. */
  partSize: number;
  /** A gpg key (id, fingerprint or user id) that signs each architecture's manifest. */
  signWith?: string;
  /** Merge into the index the tag names now, keeping its other architectures. */
  keepOtherArches: boolean;
  log: (line: string) => void;
}

export interface PushResult {
  reference: string;
  /** The digest of the index the tag names now. */
  digest: string;
  manifests: { arch: Arch; digest: string }[];
  sent: { blobs: number; bytes: number };
  alreadyThere: number;
}

const descriptorOf = (bytes: Buffer, mediaType: string): Descriptor => ({ mediaType, digest: sha256Digest(bytes), size: bytes.length });

/** gpg's detached, ASCII-armored signature of `data`, made with the user's own gpg and key. */
async function sign(data: Buffer, key: string): Promise<Buffer> {
  const result = await runChild('gpg', ['--batch', '--yes', '--armor', '--detach-sign', '--local-user', key, '--output', '-'], { input: data, stdio: ['pipe', 'pipe', 'pipe'] });
  if (result.startError?.code === 'ENOENT') throw usageError('--sign needs gpg (Debian package "gpg")');
  if (result.exitCode !== 0) throw new BoxbuildError('boxUnavailable', `gpg cannot sign with key "${key}": ${result.stderr.trim().split('\n').pop() ?? `exit status ${result.exitCode}`}`);
  return Buffer.from(result.stdout);
}

/** Publishes one architecture: its blobs the registry lacks, then its manifest by digest (and its signature). */
async function pushArch(client: RegistryClient, installed: InstalledBox, request: PushRequest, result: PushResult): Promise<Descriptor> {
  const { manifest, dir } = installed;
  const send = async (digest: string, size: number, open: () => Readable, label: string) => {
    if (await client.uploadBlob(digest, size, open, label)) {
      result.sent.blobs++;
      result.sent.bytes += size;
    } else {
      result.alreadyThere++;
    }
  };
  const fromFile = (name: string, offset = 0, size?: number) => () => createReadStream(join(dir, name), size === undefined ? {} : { start: offset, end: offset + size - 1 });
  const config = boxConfig(manifest);
  const configBlob = descriptorOf(config, MEDIA_TYPES.config);
  const blobs: Partial<Record<'kernel' | 'initrd' | 'packages', Descriptor>> = {};
  for (const role of ['kernel', 'initrd', 'packages'] as const) {
    const file = manifest.files[role];
    if (!file) continue;
    blobs[role] = { mediaType: '', digest: `sha256:${file.sha256}`, size: file.size };
    await send(blobs[role]!.digest, file.size, fromFile(file.name), file.name);
  }
  const taken = [configBlob.digest, ...Object.values(blobs).map((blob) => blob.digest)];
  if (new Set(taken).size !== taken.length) throw new BoxbuildError('boxUnavailable', `box ${manifest.name} (${manifest.arch}) has two files of the same content; a box in a registry cannot`);
  const system = manifest.files.system;
  const parts: Descriptor[] = [];
  if (system) {
    request.log(`box ${manifest.name} (${manifest.arch}): reading its system disk (${formatBytes(system.size)})`);
    const cut = await diskParts(join(dir, system.name), request.partSize, taken);
    if (cut.sha256 !== system.sha256) throw new BoxbuildError('boxUnavailable', `box ${manifest.name} (${manifest.arch}) is damaged: ${system.name} is not what its manifest says; repair it with "boxbuild box verify --repair ${manifest.name} --arch ${manifest.arch}"`);
    if (cut.parts.some((part) => taken.includes(part.digest))) throw new BoxbuildError('boxUnavailable', `box ${manifest.name} (${manifest.arch}): its system disk is the same as another of its files`);
    for (const [index, part] of cut.parts.entries()) {
      await send(part.digest, part.size, fromFile(system.name, part.offset, part.size), `${system.name} part ${index + 1}/${cut.parts.length}`);
      parts.push({ mediaType: MEDIA_TYPES.systemPart, digest: part.digest, size: part.size });
    }
  }
  await send(configBlob.digest, configBlob.size, () => Readable.from([config]), 'box config');
  const bytes = boxManifestBytes(configBlob, manifest.files, blobs, parts, manifest.arch);
  const pushed = descriptorOf(bytes, MEDIA_TYPES.manifest);
  await client.putManifest(pushed.digest, MEDIA_TYPES.manifest, bytes);
  if (request.signWith) {
    const signature = await sign(bytes, request.signWith);
    const signatureBlob = descriptorOf(signature, MEDIA_TYPES.signature);
    const empty = Buffer.from('{}');
    const emptyBlob = descriptorOf(empty, 'application/vnd.oci.empty.v1+json');
    await send(signatureBlob.digest, signatureBlob.size, () => Readable.from([signature]), 'signature');
    await send(emptyBlob.digest, emptyBlob.size, () => Readable.from([empty]), 'empty config');
    await client.putManifest(signatureTag(pushed.digest), MEDIA_TYPES.manifest, signatureManifestBytes(signatureBlob, pushed, emptyBlob));
  }
  return pushed;
}

/** The index the tag names now, for the architectures a push leaves as they are; none when the tag is new. */
async function currentIndex(client: RegistryClient, tag: string): Promise<Buffer | undefined> {
  const found = await client.findManifest(tag);
  return found && isIndex(found.bytes) ? found.bytes : undefined;
}

/**
 * Publishes box versions as one OCI artifact under a tag: the blobs the registry does not have
 * (a disk in parts), a manifest per architecture, and an index of them, pushed last, so that a
 * puller sees the old box or the whole new one.
 */
export async function pushBox(ctx: NetContext, request: PushRequest): Promise<PushResult> {
  const { ref } = request;
  if (!ref.tag || ref.digest) throw usageError(`box push: "${formatReference(ref)}" must name a tag, not a digest (the digest is what the push makes)`);
  // A push goes to the registry's location as registries.conf names it (never to a mirror).
  const target = endpointsOf(ref, loadRegistriesConf()).at(-1)!;
  const client = new RegistryClient(ctx, target.ref, 'pull,push', { insecure: target.insecure });
  const result: PushResult = { reference: formatReference(ref), digest: '', manifests: [], sent: { blobs: 0, bytes: 0 }, alreadyThere: 0 };
  const pushed: { arch: Arch; manifest: Descriptor }[] = [];
  for (const installed of request.boxes) {
    const { arch, name } = installed.manifest;
    const manifest = await pushArch(client, installed, request, result);
    pushed.push({ arch, manifest });
    result.manifests.push({ arch, digest: manifest.digest });
    request.log(`box ${name} (${arch}): manifest ${manifest.digest}`);
  }
  const existing = request.keepOtherArches ? await currentIndex(client, ref.tag) : undefined;
  const kept = existing ? otherArchEntries(existing, pushed.map((entry) => entry.arch)) : [];
  const index = indexBytes([...kept, ...pushed]);
  await client.putManifest(ref.tag, MEDIA_TYPES.index, index);
  result.digest = sha256Digest(index);
  return result;
}
