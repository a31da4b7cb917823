import { copyFile, link, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { selfContainedImage } from '../qemu/image-file.js';
import type { Arch } from './arch.js';
import {
  type BoxFiles,
  type BoxManifest,
  type DownloadRecord,
  type FileRole,
  type InstalledBox,
  type ManifestFile,
  type ProbeRecord,
  boxTmpDir,
  freshWorkDir,
  installVersion,
} from './cache.js';
import { CHECKSUM_FILE, type NetContext, PACKAGE_LIST, SIGNATURE_FILE, downloadFile, fetchSmall, fetchSmallFile, fromMirrors } from './download.js';
import { HttpStatusError } from './http.js';
import { sha256Of } from './hash.js';
import { PRIVATE_FILE } from './modes.js';
import { verifySignature } from './openpgp.js';
import { type FileSource, isSidecarUrl, parseSidecar, sidecarUrl, signatureUrl } from './sources.js';
import { unpackKernelTarball, unpackLimit } from './tarball.js';

export interface RemoteVariant {
  cacheRoot: string;
  name: string;
  arch: Arch;
  sources: FileSource[];
  /** The box's memory: what its kernel and initrd must fit into. */
  memoryMiB: number;
}

/** What one source became in the staging directory. */
interface Fetched {
  record: DownloadRecord;
  files: Partial<BoxFiles>;
  probe?: ProbeRecord;
}

/** Hard-links (or copies, across file systems) a file of the previous version into the staging directory. */
async function reuse(from: string, to: string): Promise<void> {
  await link(from, to).catch(() => copyFile(from, to));
}

/** The detached signature of a checksum sidecar, which the registry requires: one line when it is not published. */
async function fetchSignature(ctx: NetContext, label: string, url: string): Promise<Buffer> {
  const signature = signatureUrl(url);
  try {
    return (await fetchSmallFile(ctx, `${label}.asc`, signature, SIGNATURE_FILE)).body!;
  } catch (error) {
    if (!(error instanceof HttpStatusError) || error.status >= 500) throw error;
    throw new BoxbuildError('boxUnavailable', `${label}: the registry requires an OpenPGP signature, but ${signature} answers ${error.message}`, { cause: error });
  }
}

/** The sha256 a mirror publishes for a file in its `.sha256` sidecar, whose OpenPGP signature is checked when the registry pins a key. */
async function sidecarChecksum(ctx: NetContext, source: FileSource, url: string): Promise<{ sha256: string; probe: ProbeRecord }> {
  const probeUrl = sidecarUrl(url);
  const label = `${source.name}.sha256`;
  const response = await fetchSmallFile(ctx, label, probeUrl, CHECKSUM_FILE);
  if (source.signedBy) await verifySignature(label, source.signedBy, response.body!, await fetchSignature(ctx, label, probeUrl), ctx.signal);
  const sha256 = parseSidecar(response.body!.toString('utf8'));
  if (!sha256) throw new BoxbuildError('boxUnavailable', `${probeUrl} is not a sha256 checksum file`);
  return { sha256, probe: { url: probeUrl, sha256: sha256Of(response.body!), etag: response.etag, lastModified: response.lastModified } };
}

/** A small unverified file (the package list): fetched whole; it is its own update probe. */
async function fetchListing(ctx: NetContext, source: FileSource, url: string, staging: string): Promise<Fetched> {
  const response = await fetchSmallFile(ctx, source.name, url, PACKAGE_LIST);
  const body = response.body!;
  await writeFile(join(staging, source.name), body, { mode: PRIVATE_FILE });
  const sha256 = sha256Of(body);
  return {
    record: { url, sha256, size: body.length, lastModified: response.lastModified, files: ['packages'] },
    files: { packages: { name: source.name, sha256, size: body.length } },
    probe: { url, sha256, etag: response.etag, lastModified: response.lastModified },
  };
}

/** Downloads (or reuses from the previous version) one verified file, unpacking a kernel tarball. */
async function fetchVerified(
  variant: RemoteVariant,
  ctx: NetContext,
  source: FileSource,
  url: string,
  staging: string,
  previous: InstalledBox | undefined,
): Promise<Fetched> {
  const checked = source.checksum === 'sidecar' ? await sidecarChecksum(ctx, source, url) : undefined;
  const sha256 = checked?.sha256 ?? (source.checksum as { pinned: string }).pinned;
  const old = previous?.manifest.downloads?.[source.role];
  if (old?.sha256 === sha256) {
    const files: Partial<BoxFiles> = {};
    for (const role of old.files) {
      const file = previous!.manifest.files[role]!;
      await reuse(join(previous!.dir, file.name), join(staging, file.name));
      files[role] = file;
    }
    return { record: { ...old, url }, files, probe: checked?.probe };
  }
  const partial = join(boxTmpDir(variant.cacheRoot, variant.name, variant.arch), `${sha256}.part`);
  const { size, lastModified } = await downloadFile(ctx, url, partial, sha256, source.name);
  let files: Partial<BoxFiles>;
  if (source.role === 'kernelTarball') {
    // Unpacked or refused, the tarball is of no more use: a later download starts over.
    try {
      files = await unpackKernelTarball(partial, source.name, staging, unpackLimit(variant.memoryMiB, size));
    } finally {
      await rm(partial, { force: true });
    }
  } else {
    await rename(partial, join(staging, source.name));
    files = { [source.role]: { name: source.name, sha256, size } satisfies ManifestFile };
  }
  const record: DownloadRecord = { url, sha256, size, lastModified, files: Object.keys(files) as FileRole[] };
  return { record, files, probe: checked?.probe };
}

/** A remote box's version for people: when its newest file was published, else the checksum of its main (last) file. */
function versionOf(fetched: Fetched[]): string {
  const dates = fetched.map(({ record }) => Date.parse(record.lastModified ?? '')).filter(Number.isFinite);
  if (dates.length > 0) return new Date(Math.max(...dates)).toISOString().slice(0, 16).replace('T', ' ');
  return `sha256:${fetched.at(-1)!.record.sha256.slice(0, 12)}`;
}

/**
 * Downloads every file of a remote box variant from its mirrors into a staging directory in the
 * cache, verifies it, unpacks the kernel tarball, and installs it as a new version beside the
 * old one (switched to only when all of it is there). Files whose sha256 did not change are
 * taken from `previous` instead of downloaded again. Partial downloads stay for a later resume.
 */
export async function installRemote(variant: RemoteVariant, ctx: NetContext, previous?: InstalledBox): Promise<InstalledBox> {
  const staging = await freshWorkDir(variant.cacheRoot, variant.name, variant.arch, 'staging-');
  try {
    const fetched: Fetched[] = [];
    for (const source of variant.sources) {
      const fetch = (url: string) =>
        source.checksum === 'none' ? fetchListing(ctx, source, url, staging) : fetchVerified(variant, ctx, source, url, staging, previous);
      fetched.push(await fromMirrors(source.name, source.urls, fetch, ctx.signal));
    }
    const files = Object.assign({}, ...fetched.map((entry) => entry.files)) as BoxFiles;
    // A mirror serves the disk and its checksum both: the disk must name no host file (see image-file.ts).
    const system = fetched.find((entry) => entry.record.files.includes('system'));
    if (system) await selfContainedImage(join(staging, files.system!.name), `box ${variant.name} (${variant.arch}): its system disk ${system.record.url}`, 'boxUnavailable');
    const probes = fetched.flatMap((entry) => (entry.probe ? [entry.probe] : []));
    const listing = fetched.find((entry) => entry.record.files.includes('packages'));
    const manifest: BoxManifest = {
      name: variant.name,
      arch: variant.arch,
      version: versionOf(fetched),
      files,
      sources: Object.fromEntries(fetched.map(({ record }, index) => [variant.sources[index]!.role, record.url])),
      downloads: Object.fromEntries(fetched.map(({ record }, index) => [variant.sources[index]!.role, record])),
      // The package list changes whenever the box does: when there is one, it alone is asked about.
      probes: listing ? [listing.probe!] : probes,
    };
    return await installVersion(variant.cacheRoot, staging, manifest);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Whether the installed version is still what the registry and the server describe. Pinned
 * files are compared with the registry (no request); otherwise one small conditional request
 * per probe (the package list, or the checksum sidecars) tells. Network failures are thrown.
 */
export async function isUpToDate(installed: InstalledBox, sources: FileSource[], ctx: NetContext): Promise<boolean> {
  const downloads = installed.manifest.downloads ?? {};
  if (Object.keys(downloads).length !== sources.length) return false;
  for (const source of sources) {
    const record = downloads[source.role];
    if (!record || !source.urls.includes(record.url)) return false;
    if (typeof source.checksum === 'object' && source.checksum.pinned !== record.sha256) return false;
  }
  const answers = await Promise.all(
    (installed.manifest.probes ?? []).map(async (probe) => {
      const response = await fetchSmall(ctx, probe.url, isSidecarUrl(probe.url) ? CHECKSUM_FILE : PACKAGE_LIST, probe);
      return response.body === undefined || sha256Of(response.body) === probe.sha256;
    }),
  );
  return answers.every(Boolean);
}
