import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * An OCI image layout in `dir`, written to the image spec by the test: `layers` (plain tar bytes,
 * lowest first; gzip-compressed where `gzip` says so), a config with their diff_ids, a manifest,
 * and an index naming it `tag` for `arch` (OCI's amd64 or arm64).
 */
export function ociLayout(dir: string, layers: Buffer[], options: { arch: 'amd64' | 'arm64'; tag?: string; gzip?: boolean[] }): string {
  mkdirSync(join(dir, 'blobs/sha256'), { recursive: true });
  const blob = (data: Buffer, mediaType: string) => {
    const digest = `sha256:${sha256(data)}`;
    writeFileSync(join(dir, 'blobs/sha256', digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const layerBlobs = layers.map((tar, at) =>
    options.gzip?.[at] ? blob(gzipSync(tar), 'application/vnd.oci.image.layer.v1.tar+gzip') : blob(tar, 'application/vnd.oci.image.layer.v1.tar'),
  );
  const config = { architecture: options.arch, os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((tar) => `sha256:${sha256(tar)}`) } };
  const configBlob = blob(Buffer.from(JSON.stringify(config)), 'application/vnd.oci.image.config.v1+json');
  const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configBlob, layers: layerBlobs };
  const manifestBlob = blob(Buffer.from(JSON.stringify(manifest)), 'application/vnd.oci.image.manifest.v1+json');
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ ...manifestBlob, platform: { architecture: options.arch, os: 'linux' }, annotations: { 'org.opencontainers.image.ref.name': options.tag ?? 'latest' } }],
  };
  writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return dir;
}
