import { posix } from 'node:path';

/**
 * What a remote box variant is made of, in download order. `packages` is the box's package list
 * (small; it changes whenever the box changes), fetched first so that a box published during a
 * download is noticed by the next update check. `kernelTarball` is unpacked into `kernel` and `initrd`.
 */
export const SOURCE_ROLES = ['packages', 'kernel', 'initrd', 'kernelTarball', 'system'] as const;
export type SourceRole = (typeof SOURCE_ROLES)[number];

/** How a downloaded file is checked: a pinned sha256, a `<url>.sha256` sidecar next to it, or not at all (package lists only). */
export type Checksum = { pinned: string } | 'sidecar' | 'none';

/** One file of a remote box variant, resolved from the registry. */
export interface FileSource {
  role: SourceRole;
  /** File name in the cache and in messages (the URL's last path segment). */
  name: string;
  /** Where it comes from, tried in order. */
  urls: string[];
  checksum: Checksum;
  /** The binary OpenPGP public key whose detached signature (`<url>.sha256.asc`) the checksum sidecar must carry. */
  signedBy?: Buffer;
}

const OBS_DOWNLOAD = 'https://download.opensuse.org/repositories/';

/**
 * `obs://Project:Sub/repo` means the Open Build Service download area of that project
 * (`https://download.opensuse.org/repositories/Project:/Sub/repo/`); other URLs are used as they are.
 */
export function expandObs(url: string): string {
  const match = /^obs:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!match) return url;
  const path = match[2] ? `${match[2].replace(/\/$/, '')}/` : '';
  return `${OBS_DOWNLOAD}${match[1]!.replaceAll(':', ':/')}/${path}`;
}

export const isAbsoluteUrl = (url: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(url);

/** Each URL as it is when absolute, otherwise relative to each mirror in turn. */
export function resolveUrls(urls: string[], mirrors: string[]): string[] {
  return urls.flatMap((url) => {
    if (isAbsoluteUrl(url)) return [expandObs(url)];
    return mirrors.map((mirror) => {
      const base = expandObs(mirror);
      return new URL(url, base.endsWith('/') ? base : `${base}/`).href;
    });
  });
}

/** The last path segment of a URL, decoded ("" when there is none). */
export function urlFileName(url: string): string {
  try {
    return decodeURIComponent(posix.basename(new URL(url).pathname));
  } catch {
    return '';
  }
}

export const sidecarUrl = (url: string) => `${url}.sha256`;
export const isSidecarUrl = (url: string) => url.endsWith('.sha256');

/** Where the detached OpenPGP signature of a file is published (OBS: beside the checksum file). */
export const signatureUrl = (url: string) => `${url}.asc`;

export const isSha256 = (text: string) => /^[0-9a-f]{64}$/.test(text);

/** The checksum in a `.sha256` sidecar ("<hex>  <file name>", as sha256sum writes it), or undefined. */
export function parseSidecar(text: string): string | undefined {
  const first = text.trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  return isSha256(first) ? first : undefined;
}
