import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { ReadEntry } from 'tar';
import { shown } from '../../util/shown.js';
import type { Layer } from './source.js';
import { type EntryHandler, readTar, tarFailure } from './tar.js';
import { ELF_HEAD, type MergedTree, PATH_MAX, Refusal, type TreeNode, elfArch, pathParts } from './tree.js';

/*
 * A layer's entries checked against the merged tree of the layers below (see tree.ts), whiteouts
 * included: `.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` empties its directory of
 * what they put there. Device nodes, fifos and set-id files are fine: the box is a VM, and nothing
 * of an import is ever extracted on the host.
 */

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const OTHER_TYPES = new Set(['CharacterDevice', 'BlockDevice', 'FIFO']);

/** What applyEntry reads of an entry. */
export type EntryHeader = Pick<ReadEntry, 'path' | 'type' | 'size'> & { linkpath?: string };

/**
 * Applies a tar entry to the tree as one of its current layer. Returns the entry's path components,
 * and the node of a regular file (whose data the caller reads, to fill in its `elf`).
 */
export function applyEntry(tree: MergedTree, entry: EntryHeader, index: number): { parts: string[]; file?: TreeNode } {
  const parts = pathParts(entry.path, 'entry');
  const path = parts.join('/');
  const name = parts.at(-1);
  if (parts.slice(0, -1).some((part) => part.startsWith(WHITEOUT))) throw new Refusal(`entry "${shown(path)}" lies inside a whiteout marker`);
  if (name?.startsWith(WHITEOUT)) {
    if (entry.type === 'Directory') throw new Refusal(`whiteout marker "${shown(path)}" is a directory`);
    const parent = parts.slice(0, -1);
    if (name === OPAQUE) {
      tree.opaqueDirectory(parent, path);
    } else {
      const target = name.slice(WHITEOUT.length);
      if (target === '' || target === '.' || target === '..' || target.startsWith(WHITEOUT)) throw new Refusal(`whiteout "${shown(path)}" names "${shown(target)}"`);
      tree.whiteout(parent, target, path);
    }
    return { parts };
  }
  if (FILE_TYPES.has(entry.type)) return { parts, file: tree.add(parts, { kind: 'file', size: entry.size, entry: index }) };
  switch (entry.type) {
    case 'Directory':
      tree.add(parts, { kind: 'dir', size: 0 });
      break;
    case 'SymbolicLink': {
      // Any target, absolute ones too: it is resolved in the guest (see tree.ts); nothing is written through it.
      const target = entry.linkpath ?? '';
      if (target.includes('\0') || Buffer.byteLength(target) > PATH_MAX) throw new Refusal(`symlink "${shown(path)}" has a target holding a NUL byte or longer than ${PATH_MAX} bytes`);
      tree.add(parts, { kind: 'symlink', size: 0, target });
      break;
    }
    case 'Link': {
      const raw = entry.linkpath ?? '';
      if (raw.startsWith('/')) throw new Refusal(`hard link "${shown(path)}" has an absolute target ("${shown(raw)}")`);
      tree.link(parts, pathParts(raw, `hard link "${shown(path)}" -> target`), raw);
      break;
    }
    default:
      if (!OTHER_TYPES.has(entry.type)) throw new Refusal(`entry "${shown(path)}" is of a kind boxbuild does not import (${entry.type})`);
      tree.add(parts, { kind: 'other', size: 0 });
  }
  return { parts };
}

/**
 * An entry handler that applies each entry to `tree` and reads the first bytes of regular files
 * (for elfArch); the data of those `keep` says yes to is put whole into `kept`, by entry index.
 */
export function checkedEntries(tree: MergedTree, keep?: { wants: (parts: string[], entry: ReadEntry) => boolean; kept: Map<number, Buffer> }): EntryHandler {
  return (entry, index) => {
    const { parts, file } = applyEntry(tree, entry, index);
    if (!file) return;
    const keeping = keep?.wants(parts, entry) ?? false;
    const chunks: Buffer[] = [];
    let length = 0;
    entry.on('data', (chunk: Buffer) => {
      if (keeping || length < ELF_HEAD) chunks.push(chunk);
      length += chunk.length;
    });
    entry.on('end', () => {
      const data = Buffer.concat(chunks);
      file.elf = elfArch(data.subarray(0, ELF_HEAD));
      if (keeping) keep!.kept.set(index, data);
    });
  };
}

/** The most bytes of zeros an empty layer may be (tar pads archives to records of 10 KiB). */
const EMPTY_MAX = 1 << 20;

/** Whether a plain tar holds no entry at all: no bytes, or zeros only (an empty layer's tar, which the Parser calls no tar). */
async function isEmptyTar(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    if (size > EMPTY_MAX) return false;
    const { buffer, bytesRead } = await file.read(Buffer.alloc(size), 0, size, 0);
    return buffer.subarray(0, bytesRead).every((byte) => byte === 0);
  } finally {
    await file.close();
  }
}

/**
 * Checks the plain tar `file` as layer `index` on top of `tree`; its Layer, or undefined when it
 * holds no entry (an empty layer changes nothing). Refusals are clauses of their own ("entry ... goes through ...").
 */
export async function readLayer(file: string, tree: MergedTree, index: number, signal?: AbortSignal): Promise<Layer | undefined> {
  if (await isEmptyTar(file)) return undefined;
  tree.beginLayer(index);
  let entries: number;
  try {
    entries = await readTar(createReadStream(file, { highWaterMark: 1 << 20 }), checkedEntries(tree), signal);
  } catch (error) {
    throw tarFailure(error);
  }
  const changes = tree.endLayer();
  return entries === 0 ? undefined : { file, ...changes };
}
