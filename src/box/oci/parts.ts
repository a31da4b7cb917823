import { type Hash, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';

/** One part of a system disk as published: a blob of the bytes at `offset`. */
export interface DiskPart {
  offset: number;
  size: number;
  digest: string;
}

export const DEFAULT_PART_SIZE = 64 << 20;

const digestOf = (hash: Hash) => `sha256:${hash.digest('hex')}`;

/** The sha256 digest of `size` bytes of a file at `offset`. */
async function rangeDigest(path: string, offset: number, size: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start: offset, end: offset + size - 1, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return digestOf(hash);
}

/**
 * Cuts a disk into parts of `partSize` bytes, in one read, so that a cut pull resumes part by part
 * and an update downloads only the parts that changed. No two blobs of a box may be the same (a
 * puller refuses a manifest that names one twice), so a block equal to a part before it (zeros,
 * say) joins the part it follows, and a part equal to an earlier one grows until it differs.
 * Resolves with the parts and the disk's own sha256.
 */
export async function diskParts(path: string, partSize: number, taken: Iterable<string> = []): Promise<{ parts: DiskPart[]; sha256: string }> {
  const seen = new Set(taken);
  const parts: DiskPart[] = [];
  const whole = createHash('sha256');
  let current: { offset: number; size: number; hash: Hash } | undefined;
  const file = await open(path, 'r');
  try {
    const block = Buffer.allocUnsafe(partSize);
    for (let offset = 0; ; ) {
      const { bytesRead } = await file.read(block, 0, partSize, offset);
      if (bytesRead === 0) break;
      const data = block.subarray(0, bytesRead);
      whole.update(data);
      const blockDigest = digestOf(createHash('sha256').update(data));
      const currentDigest = current && digestOf(current.hash.copy());
      if (current && currentDigest && !seen.has(currentDigest) && !seen.has(blockDigest)) {
        parts.push({ offset: current.offset, size: current.size, digest: currentDigest });
        seen.add(currentDigest);
        current = undefined;
      }
      if (current) {
        current.hash.update(data);
        current.size += bytesRead;
      } else {
        current = { offset, size: bytesRead, hash: createHash('sha256').update(data) };
      }
      offset += bytesRead;
    }
  } finally {
    await file.close();
  }
  if (current) {
    // The last part may still equal an earlier one: it joins the parts before it until it differs.
    let last = { offset: current.offset, size: current.size, digest: digestOf(current.hash) };
    while (seen.has(last.digest) && parts.length > 0) {
      const before = parts.pop()!;
      const size = before.size + last.size;
      last = { offset: before.offset, size, digest: await rangeDigest(path, before.offset, size) };
    }
    parts.push(last);
  }
  return { parts, sha256: whole.digest('hex') };
}
