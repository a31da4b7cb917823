import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { runChild } from '../util/child.js';

/** Packet tags an OpenPGP public key starts with: 6 (public key), in the old or the new packet format. */
const PUBLIC_KEY_PACKET = (first: number) => (first & 0xc0) === 0xc0 ? (first & 0x3f) === 6 : (first & 0x80) !== 0 && ((first >> 2) & 0x0f) === 6;

/**
 * The binary key of an ASCII-armored OpenPGP public key block (what `gpg --armor --export`
 * writes), or undefined when the text is not one. gpgv needs a binary keyring.
 */
export function dearmorPublicKey(armored: string): Buffer | undefined {
  const match = /^-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(?:[^\r\n]+\r?\n)*?\r?\n([A-Za-z0-9+/=\r\n]+?)(?:\r?\n=[A-Za-z0-9+/]{4})?\r?\n-----END PGP PUBLIC KEY BLOCK-----\s*$/.exec(armored.trim());
  if (!match) return undefined;
  const key = Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64');
  return key.length > 0 && PUBLIC_KEY_PACKET(key[0]!) ? key : undefined;
}

/**
 * Checks a detached OpenPGP signature of `data` with gpgv, against a keyring that holds only the
 * pinned key (made in a temp directory, never the user's keyrings). Fails with one line (exit 69).
 */
export async function verifySignature(what: string, key: Buffer, data: Buffer, signature: Buffer, signal?: AbortSignal): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'boxbuild-gpgv-'));
  try {
    const paths = { keyring: join(dir, 'pinned.gpg'), data: join(dir, 'data'), signature: join(dir, 'data.asc') };
    await Promise.all([writeFile(paths.keyring, key), writeFile(paths.data, data), writeFile(paths.signature, signature)]);
    const result = await runChild('gpgv', ['--homedir', dir, '--keyring', paths.keyring, paths.signature, paths.data], { signal });
    signal?.throwIfAborted();
    if (result.startError?.code === 'ENOENT') throw new BoxbuildError('boxUnavailable', `${what}: gpgv, which checks OpenPGP signatures, is not installed (Debian package "gpgv")`);
    if (result.exitCode !== 0) {
      const said = result.all.trim().split('\n').filter((line) => !line.includes('Signature made') && !line.includes('using ')).pop() ?? 'failed';
      throw new BoxbuildError('boxUnavailable', `${what}: the OpenPGP signature does not verify with the registry's key (gpgv: ${said.replace(/^gpgv: /, '')})`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
