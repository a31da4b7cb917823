import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ReadEntry } from 'tar';
import { PRIVATE_FILE } from '../modes.js';
import { checkedEntries } from './layer.js';
import { JSON_MAX } from './oci.js';
import { type Compression, HashTap, decompressor, explained, tee } from './streams.js';
import { tarFailure, tarSink } from './tar.js';
import { type LayerChanges, MergedTree, Refusal, type TreeNode } from './tree.js';

/*
 * A tar source (a root file system tarball, a Vagrant box, an OCI or Docker archive) is read once
 * whole before anything else: its bytes hashed, decompressed (a compressed one into a plain copy in
 * the work directory, read again from there), its entries checked as a root file system's single
 * layer would be (whatever it turns out to be, a tar with hostile entries is refused), the small
 * files an archive's format is told by kept. What an archive holds beyond those is read in a second
 * pass over the plain tar, its members taken by their index in it.
 */

/** How many bytes of small files a survey keeps in all (the JSON of archives). */
const KEEP_MAX = 64 << 20;
const BLOB_PATH = /^[0-9a-f]{64}$/;

export interface Survey {
  /** sha256 (hex) and size of the source's bytes. */
  sha256: string;
  size: number;
  compression: Compression;
  /** The plain tar: a decompressed copy in the work directory, or the source itself. */
  plain: string;
  copied: boolean;
  /** Its entries as a root file system's first layer, and that layer's whiteouts. */
  tree: MergedTree;
  changes: LayerChanges;
  /** The data of small top-level files and blobs/sha256/HEX files, by entry index. */
  kept: Map<number, Buffer>;
}

/** Reads a tar source whole (see the top of the file). */
export async function surveyTar(source: string, compression: Compression, work: string, signal?: AbortSignal): Promise<Survey> {
  const tree = new MergedTree();
  tree.beginLayer(0);
  const kept = new Map<number, Buffer>();
  let keeping = 0;
  const wants = (parts: string[], entry: ReadEntry) => {
    const place = parts.length === 1 || (parts.length === 3 && parts[0] === 'blobs' && parts[1] === 'sha256' && BLOB_PATH.test(parts[2]!));
    if (!place || entry.size > JSON_MAX || keeping + entry.size > KEEP_MAX) return false;
    keeping += entry.size;
    return true;
  };
  const { sink, done } = tarSink(checkedEntries(tree, { wants, kept }));
  const decompress = decompressor(compression);
  const plain = decompress ? join(work, 'source.tar') : source;
  const read = new HashTap();
  const input = createReadStream(source, { highWaterMark: 1 << 20 });
  try {
    if (decompress) await pipeline(input, read, decompress.stream, tee([sink, createWriteStream(plain, { mode: PRIVATE_FILE, flags: 'wx' })]), { signal });
    else await pipeline(input, read, sink, { signal });
    if ((await done) === 0) throw new Refusal('the tar archive has no entries');
  } catch (error) {
    if (signal?.aborted) throw error;
    throw tarFailure(await explained(error, decompress));
  }
  return { sha256: read.sha256, size: read.size, compression, plain, copied: !!decompress, tree, changes: tree.endLayer(), kept };
}

/** The regular file `path` names in a surveyed tar (symlinks in it followed), if there is one. */
export function memberOf(survey: Survey, path: string): TreeNode | undefined {
  const node = survey.tree.resolve(path);
  return node?.kind === 'file' ? node : undefined;
}

/** The data a survey kept of a member; refused when it was not kept (too large). */
export function keptData(survey: Survey, node: TreeNode, what: string): Buffer {
  const data = survey.kept.get(node.entry!);
  if (!data) throw new Refusal(`${what} is too large to read (more than ${JSON_MAX >> 20} MiB, or more than ${KEEP_MAX >> 20} MiB of such files in all)`);
  return data;
}

/**
 * Writes the data of the members `wanted` (entry index -> new file) of a surveyed tar. Reading
 * the source itself again, it checks that its bytes are still those surveyed.
 */
export async function extractMembers(survey: Survey, wanted: Map<number, string>, signal?: AbortSignal): Promise<void> {
  const read = new HashTap();
  const written = new Set<number>();
  const { sink, done } = tarSink((entry, index) => {
    const dest = wanted.get(index);
    if (dest === undefined) return undefined;
    written.add(index);
    return pipeline(entry, createWriteStream(dest, { mode: PRIVATE_FILE, flags: 'wx' }));
  });
  try {
    await pipeline(createReadStream(survey.plain, { highWaterMark: 1 << 20 }), read, sink, { signal });
    await done;
  } catch (error) {
    if (signal?.aborted) throw error;
    throw tarFailure(error);
  }
  if ((!survey.copied && read.sha256 !== survey.sha256) || written.size !== wanted.size) throw new Refusal('it changed while it was read');
}
