import { shown } from '../../util/shown.js';
import type { Arch } from '../arch.js';

/*
 * The merged tree of an image's layers, as the guest will have it after extracting them one after
 * the other with busybox tar: path -> kind (and a symlink's target). Every entry of every layer is
 * checked against it before anything is extracted, so that no entry, hard link or whiteout goes
 * through a symlink (busybox tar creates an entry's missing parents and follows the symlinks among
 * them) and the guest's extraction does what the layers say.
 *
 * Symlink *targets* may be anything, absolute ones included: they are normal in a root file system
 * and are resolved in the guest, where the disk is mounted, never on the host. What matters is
 * that no entry is written *through* one, which the tree refuses.
 *
 * How busybox tar (with its default ARCHIVE_UNLINK_OLD) extracts an entry over an existing path,
 * and so what the tree models:
 * - a non-directory over a non-directory: unlinks the old one (so a final symlink is replaced, not
 *   followed);
 * - a directory over a directory: keeps it (mkdir's EEXIST);
 * - a directory over a non-directory (a symlink too: it would stay, and later entries would go
 *   through it) or a non-directory over a directory (unlink fails): not what the layer means.
 *   Across layers the tree adds the lower path to the layer's whiteouts, which the guest deletes
 *   before extracting the layer; within one layer it is refused.
 */

/** A thing in an image refused as hostile or broken: a clause of its own, put after where it is ("layer 2: ..."). */
export class Refusal extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Refusal';
  }
}

/** A source that does not suit as given (an architecture to choose, a wrong one): the user's to fix; a clause as Refusal's. */
export class UsageProblem extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageProblem';
  }
}

export type NodeKind = 'dir' | 'file' | 'symlink' | 'other';

export interface TreeNode {
  kind: NodeKind;
  /** The layer that put it there (-1: the root). */
  layer: number;
  /** A regular file's size. */
  size: number;
  /** A symlink's target, as written. */
  target?: string;
  /** A regular file that is an ELF program: its architecture, or a description of a foreign one. */
  elf?: string;
  /** The index of the tar entry that holds its data (for reading an archive's members). */
  entry?: number;
  children?: Map<string, TreeNode>;
}

/** What a layer's whiteouts delete (see Layer in source.ts). */
export interface LayerChanges {
  whiteouts: string[];
  opaque: string[];
  markers: string[];
}

export const PATH_MAX = 4096;
export const NAME_MAX = 255;
/** The most entries a merged tree may have (a large distribution's root has a few hundred thousand). */
export const MAX_ENTRIES = 2_000_000;
/** The most symlinks followed in resolving one path (Linux's MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;

/**
 * The components of a path in a tar: leading "/" and "./" stripped as GNU tar and busybox tar do,
 * empty and "." components dropped; a ".." component, a NUL byte (busybox would cut the name there)
 * or an overlong path or name is refused. `what` names it in the message ("entry", "hard link target").
 */
export function pathParts(raw: string, what: string): string[] {
  const refuse = (why: string) => new Refusal(`${what} "${shown(raw)}" ${why}`);
  if (raw.includes('\0')) throw refuse('holds a NUL byte');
  if (Buffer.byteLength(raw) > PATH_MAX) throw refuse(`is longer than ${PATH_MAX} bytes`);
  const parts: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw refuse('has a ".." component');
    if (Buffer.byteLength(part) > NAME_MAX) throw refuse(`has a name longer than ${NAME_MAX} bytes`);
    parts.push(part);
  }
  return parts;
}

const ELF_MAGIC = Buffer.from('\x7fELF', 'latin1');
/** How many first bytes of a file elfArch needs. */
export const ELF_HEAD = 20;

/** The architecture an ELF header (the first ELF_HEAD bytes of a file) is for; a description when boxbuild runs none such; undefined for no ELF. */
export function elfArch(head: Buffer): Arch | string | undefined {
  if (head.length < ELF_HEAD || !head.subarray(0, 4).equals(ELF_MAGIC)) return undefined;
  const bits = head[4] === 2 ? 64 : 32;
  const little = head[5] !== 2;
  const machine = little ? head.readUInt16LE(18) : head.readUInt16BE(18);
  if (bits === 64) {
    const known: Record<number, [Arch, boolean]> = { 0x3e: ['x86_64', true], 0xb7: ['aarch64', true], 0x16: ['s390x', false], 0x15: ['ppc64le', true], 0xf3: ['riscv64', true] };
    const [arch, isLittle] = known[machine] ?? [];
    if (arch && isLittle === little) return arch;
  }
  return `${bits}-bit ${little ? 'little' : 'big'}-endian ELF machine 0x${machine.toString(16)}`;
}

const joined = (parts: string[]) => parts.join('/');

export class MergedTree {
  readonly root: TreeNode = { kind: 'dir', layer: -1, size: 0, children: new Map() };
  private entries = 0;
  private layer = 0;
  private whiteouts = new Set<string>();
  private opaque = new Set<string>();
  private markers: string[] = [];

  /** Starts applying layer `index` (0 is the lowest). */
  beginLayer(index: number): void {
    this.layer = index;
    this.whiteouts = new Set();
    this.opaque = new Set();
    this.markers = [];
  }

  /**
   * What the layer deletes from the layers below, for the guest to delete before extracting it. A
   * path below another one the layer deletes is left out: it goes with it, and deleting it first
   * could go through what the lower layers have there (a symlink the layer replaces by a directory).
   */
  endLayer(): LayerChanges {
    const below = (path: string) => {
      const parts = path.split('/');
      for (let length = 1; length < parts.length; length++) if (this.whiteouts.has(joined(parts.slice(0, length)))) return true;
      return false;
    };
    const whiteouts = [...this.whiteouts].filter((path) => !below(path));
    const opaque = [...this.opaque].filter((path) => path === '' || !(this.whiteouts.has(path) || below(path)));
    return { whiteouts, opaque, markers: this.markers };
  }

  /** The number of entries in the tree (the root not counted). */
  get size(): number {
    return this.entries;
  }

  /** The directory `parts` names, made where missing (busybox tar makes an entry's parents); refused through a symlink or a non-directory. */
  private directory(parts: string[], entry: string): TreeNode {
    let node = this.root;
    for (const [at, part] of parts.entries()) {
      let child = node.children!.get(part);
      if (!child) {
        child = { kind: 'dir', layer: this.layer, size: 0, children: new Map() };
        this.insert(node, part, child);
      } else if (child.kind === 'symlink') {
        throw new Refusal(`entry "${shown(entry)}" goes through the symlink "${shown(joined(parts.slice(0, at + 1)))}" (-> ${shown(child.target!)})`);
      } else if (child.kind !== 'dir') {
        throw new Refusal(`entry "${shown(entry)}" goes through "${shown(joined(parts.slice(0, at + 1)))}", which is not a directory`);
      }
      node = child;
    }
    return node;
  }

  private insert(parent: TreeNode, name: string, node: TreeNode): void {
    parent.children!.set(name, node);
    if (++this.entries > MAX_ENTRIES) throw new Refusal(`the image has more than ${MAX_ENTRIES} entries`);
  }

  private static count(node: TreeNode): number {
    let count = 1;
    for (const child of node.children?.values() ?? []) count += MergedTree.count(child);
    return count;
  }

  /** Puts an entry of the current layer at `parts` (see the top of the file for what replaces what). */
  add(parts: string[], node: Omit<TreeNode, 'layer'>): TreeNode {
    const path = joined(parts);
    const entry: TreeNode = { ...node, layer: this.layer, children: node.kind === 'dir' ? new Map() : undefined };
    if (parts.length === 0) {
      if (node.kind !== 'dir') throw new Refusal(`the root entry ("/") is a ${node.kind}, not a directory`);
      return this.root;
    }
    const parent = this.directory(parts.slice(0, -1), path);
    const name = parts.at(-1)!;
    const existing = parent.children!.get(name);
    if (existing) {
      if (existing.kind === 'dir' && node.kind === 'dir') {
        existing.layer = this.layer;
        return existing;
      }
      if (existing.kind === 'dir' || node.kind === 'dir') {
        if (existing.layer === this.layer) throw new Refusal(`entry "${shown(path)}" is both a ${existing.kind === 'dir' ? 'directory' : existing.kind} and a ${node.kind === 'dir' ? 'directory' : node.kind} in one layer`);
        this.whiteouts.add(path);
      }
      parent.children!.delete(name);
      this.entries -= MergedTree.count(existing);
    }
    this.insert(parent, name, entry);
    return entry;
  }

  /** A hard link at `parts` to `target`, an entry already in the tree that is no directory. */
  link(parts: string[], target: string[], raw: string): void {
    const found = this.lookup(target);
    if (!found) throw new Refusal(`hard link "${shown(joined(parts))}" links to "${shown(raw)}", which is not in the image before it`);
    if (found.kind === 'dir') throw new Refusal(`hard link "${shown(joined(parts))}" links to the directory "${shown(raw)}"`);
    const { kind, size, target: symlinkTarget, elf, entry } = found;
    this.add(parts, { kind, size, target: symlinkTarget, elf, entry });
  }

  /** A whiteout `.wh.NAME` in the directory `parent` (`marker`: the marker entry's own path). */
  whiteout(parent: string[], name: string, marker: string): void {
    const dir = this.directory(parent, marker);
    this.markers.push(marker);
    this.whiteouts.add(joined([...parent, name]));
    const node = dir.children!.get(name);
    if (node && this.prune(node)) {
      dir.children!.delete(name);
      this.entries--;
    }
  }

  /** An opaque whiteout (`.wh..wh..opq`) in the directory `parts`: what the layers below have in it is gone. */
  opaqueDirectory(parts: string[], marker: string): void {
    const dir = this.directory(parts, marker);
    this.markers.push(marker);
    this.opaque.add(joined(parts));
    for (const [name, child] of dir.children!) {
      if (this.prune(child)) {
        dir.children!.delete(name);
        this.entries--;
      }
    }
  }

  /** Deletes what layers below the current one put under `node`; true when `node` itself goes too. */
  private prune(node: TreeNode): boolean {
    for (const [name, child] of node.children ?? []) {
      if (this.prune(child)) {
        node.children!.delete(name);
        this.entries--;
      }
    }
    return node.layer < this.layer && !node.children?.size;
  }

  /** The node at exactly `parts` (no symlink followed), if there is one. */
  lookup(parts: string[]): TreeNode | undefined {
    let node: TreeNode | undefined = this.root;
    for (const part of parts) {
      node = node.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  /**
   * The node `path` names in the tree as the guest would resolve it chrooted there: symlinks
   * followed, relative and absolute (from the tree's root), ".." at the root staying there, at most
   * MAX_SYMLINKS of them. Undefined when nothing is there.
   */
  resolve(path: string): TreeNode | undefined {
    const pending = path.split('/').reverse();
    const stack: TreeNode[] = [this.root];
    let followed = 0;
    while (pending.length > 0) {
      const part = pending.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const node = stack.at(-1)!.children?.get(part);
      if (!node) return undefined;
      if (node.kind !== 'symlink') {
        stack.push(node);
        continue;
      }
      if (++followed > MAX_SYMLINKS) return undefined;
      if (node.target!.startsWith('/')) stack.splice(1);
      pending.push(...node.target!.split('/').reverse());
    }
    return stack.at(-1);
  }

  /** The total size of the regular files and the number of entries. */
  totals(): { bytes: number; files: number } {
    let bytes = 0;
    const walk = (node: TreeNode) => {
      if (node.kind === 'file') bytes += node.size;
      for (const child of node.children?.values() ?? []) walk(child);
    };
    walk(this.root);
    return { bytes, files: this.entries };
  }
}
