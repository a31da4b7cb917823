import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ManifestFile } from './cache.js';

/**
 * A writable stream that computes a sha256 as the data passes (SHA extensions make that cheaper
 * than handing each chunk to another thread, which copies it).
 */
export class Sha256Stream extends Writable {
  private readonly hash = createHash('sha256');
  private hex?: string;

  constructor() {
    super({ highWaterMark: 4 << 20 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.hash.update(chunk);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.hex = this.hash.digest('hex');
    callback();
  }

  /** Feeds the contents of a file from `start` on (the part of a download that is already on disk). */
  async writeFile(path: string, start = 0): Promise<void> {
    for await (const chunk of createReadStream(path, { start, highWaterMark: 1 << 20 })) {
      if (!this.write(chunk)) await once(this, 'drain');
    }
  }

  /** The hex digest of everything written; ends the stream. */
  async digest(): Promise<string> {
    if (!this.writableEnded) this.end();
    await finished(this);
    return this.hex!;
  }
}

/** The hex sha256 of bytes in memory. */
export const sha256Of = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The sha256 of a file, read once. */
export async function hashFile(path: string): Promise<string> {
  const hash = new Sha256Stream();
  await hash.writeFile(path);
  return hash.digest();
}

/** A box file's manifest record: its name, sha256 and size, read once. */
export async function manifestFileOf(path: string): Promise<ManifestFile> {
  const hash = new Sha256Stream();
  await hash.writeFile(path);
  return { name: basename(path), sha256: await hash.digest(), size: (await stat(path)).size };
}
