import type { ReadEntry } from 'tar';
import { shown } from '../../util/shown.js';
import { Refusal } from './tree.js';

/*
 * What the guest's tar (busybox's, as Debian 12 builds it) reads of the same bytes as the `tar`
 * package's Parser, which the checks rely on. Where two tar readers differ, a hostile layer can
 * show the checks one entry and the guest another (a symlink's data block that busybox reads as a
 * header, a GNU header's prefix field busybox prepends, a pax record with a newline that the
 * Parser skips, a pax size busybox ignores, a name that is not UTF-8 and that the Parser decodes
 * lossily). So the headers are walked here once more, as busybox walks them, and every entry the
 * Parser reports must be the one read here: same name, type, link target and data size; a tar
 * that does not read alike is refused.
 */

/** The most bytes a pax or GNU long-name header may have: busybox skips larger pax headers, and the Parser is told the same bound. */
export const META_MAX = 0xfffff;

/** An entry as busybox tar reads it. */
interface Viewed {
  flag: string;
  path: string;
  linkpath?: string;
  size: number;
  paxSize?: number;
}

const TYPES: Record<string, string> = { '0': 'File', '\0': 'File', '7': 'ContiguousFile', '1': 'Link', '2': 'SymbolicLink', '3': 'CharacterDevice', '4': 'BlockDevice', '5': 'Directory', '6': 'FIFO' };
const POSIX_MAGIC = Buffer.from('ustar\x0000', 'latin1');
const utf8 = new TextDecoder('utf-8', { fatal: true });

const roundUp = (size: number) => Math.ceil(size / 512) * 512;

/** Bytes up to the first NUL, as UTF-8; undefined when they are not UTF-8. */
function text(bytes: Buffer): string | undefined {
  const end = bytes.indexOf(0);
  try {
    return utf8.decode(end < 0 ? bytes : bytes.subarray(0, end));
  } catch {
    return undefined;
  }
}

/** A numeric field: octal (with spaces and NULs around it) or GNU's base-256; undefined when it is neither. */
function numberField(bytes: Buffer): number | undefined {
  if (bytes[0]! & 0x80) {
    if (bytes[0]! & 0x40) return undefined; // negative
    let value = bytes[0]! & 0x3f;
    for (const byte of bytes.subarray(1)) value = value * 256 + byte;
    return Number.isSafeInteger(value) ? value : undefined;
  }
  const field = bytes.toString('latin1').replace(/\0.*$/s, '');
  if (!/^ *[0-7]* *$/.test(field)) return undefined;
  return field.trim() ? parseInt(field.trim(), 8) : 0;
}

/** The records of a pax header, read strictly: each "LEN KEY=VALUE\n" exactly LEN bytes, no newline inside, tiling it whole. */
function paxRecords(content: Buffer): Map<string, string> | undefined {
  const records = new Map<string, string>();
  for (let at = 0; at < content.length; ) {
    const space = content.indexOf(0x20, at);
    const digits = space < 0 ? '' : content.subarray(at, space).toString('latin1');
    const length = Number(digits);
    if (!/^[1-9][0-9]*$/.test(digits) || at + length > content.length || space + 1 >= at + length) return undefined;
    const record = content.subarray(space + 1, at + length);
    if (record.at(-1) !== 0x0a || record.subarray(0, -1).includes(0x0a)) return undefined;
    const decoded = text(record.subarray(0, -1));
    const equals = decoded?.indexOf('=') ?? -1;
    if (decoded === undefined || equals <= 0) return undefined;
    records.set(decoded.slice(0, equals), decoded.slice(equals + 1));
    at += length;
  }
  return records;
}

export class GuestTarView {
  /** The entries read and not yet checked, by index. */
  private readonly seen = new Map<number, Viewed>();
  private count = 0;
  private problem?: string;
  private header = Buffer.alloc(0);
  private skip = 0;
  private meta?: { flag: string; size: number; chunks: Buffer[]; length: number };
  private nulls = 0;
  private done = false;
  private longPath?: string;
  private longLink?: string;
  private paxSize?: number;

  /** Reads the next bytes of the tar. */
  write(chunk: Buffer): void {
    for (let at = 0; at < chunk.length && !this.done && !this.problem; ) {
      if (this.skip > 0) {
        const skipped = Math.min(this.skip, chunk.length - at);
        this.skip -= skipped;
        at += skipped;
      } else if (this.meta) {
        const taken = chunk.subarray(at, at + Math.min(this.meta.size - this.meta.length, chunk.length - at));
        this.meta.chunks.push(taken);
        this.meta.length += taken.length;
        at += taken.length;
        if (this.meta.length === this.meta.size) this.endMeta();
      } else {
        const taken = chunk.subarray(at, at + Math.min(512 - this.header.length, chunk.length - at));
        this.header = Buffer.concat([this.header, taken]);
        at += taken.length;
        if (this.header.length === 512) {
          const block = this.header;
          this.header = Buffer.alloc(0);
          this.readHeader(block);
        }
      }
    }
  }

  private fail(why: string): void {
    this.problem ??= why;
  }

  private readHeader(block: Buffer): void {
    if (block.every((byte) => byte === 0)) {
      if (++this.nulls === 2) this.done = true;
      return;
    }
    this.nulls = 0;
    if (block.subarray(257, 262).toString('latin1') !== 'ustar') return this.fail('a header without the ustar magic');
    const flag = String.fromCharCode(block[156]!);
    const size = numberField(block.subarray(124, 136));
    if (size === undefined) return this.fail('a header with a size field that is no number');
    const posix = block.subarray(257, 265).equals(POSIX_MAGIC);
    // busybox prepends the prefix field to the name whatever the magic; the Parser only for POSIX ustar.
    if (!posix && block[345] !== 0) return this.fail('a GNU header with a name prefix');
    const name = text(block.subarray(0, 100));
    const prefix = posix ? text(block.subarray(345, block[475] !== 0 ? 500 : 475)) : '';
    if (name === undefined || prefix === undefined) return this.fail('a name that is not UTF-8');
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > META_MAX) return this.fail(`an extended header of more than ${META_MAX} bytes`);
      this.meta = { flag, size, chunks: [], length: 0 };
      if (size === 0) this.endMeta();
      return;
    }
    const type = TYPES[flag];
    if (!type) return this.fail(`an entry of type ${JSON.stringify(flag)}`);
    // busybox takes a header without a name for an end block, and reads no data after it.
    if (name === '' && prefix === '') return this.fail('an entry without a name in its header');
    const path = this.longPath ?? (prefix ? `${prefix}/${name}` : name);
    const link = text(block.subarray(157, 257));
    if (link === undefined) return this.fail('a link target that is not UTF-8');
    const linkpath = this.longLink ?? link;
    this.seen.set(this.count++, { flag, path, linkpath: linkpath || undefined, size, paxSize: this.paxSize });
    this.longPath = this.longLink = this.paxSize = undefined;
    // Data as the Parser skips it: none for a directory (a '0' named with a trailing slash is one).
    this.skip = flag === '5' || ((flag === '0' || flag === '\0') && path.endsWith('/')) ? 0 : roundUp(size);
  }

  private endMeta(): void {
    const { flag, size, chunks } = this.meta!;
    this.meta = undefined;
    this.skip = roundUp(size) - size;
    const content = Buffer.concat(chunks);
    if (flag === 'L' || flag === 'K') {
      const value = text(content);
      if (value === undefined) return this.fail('a long name that is not UTF-8');
      if (flag === 'L') this.longPath = value;
      else this.longLink = value;
      return;
    }
    const records = paxRecords(content);
    if (!records) return this.fail('a pax header that is not strictly "LEN KEY=VALUE" records (or holds a newline in a value, or is not UTF-8)');
    if (flag === 'g') {
      // The Parser applies a global size and link target to the entries after it; busybox does not.
      if (records.has('path') || records.has('linkpath') || records.has('size')) return this.fail('a global pax header that sets a path, a link target or a size');
      return;
    }
    const cut = (value: string) => value.replace(/\0.*$/s, '');
    if (records.has('path')) this.longPath = cut(records.get('path')!);
    if (records.has('linkpath')) this.longLink = cut(records.get('linkpath')!);
    if (records.has('size')) {
      const value = records.get('size')!;
      if (!/^[0-9]+$/.test(value)) return this.fail('a pax size that is no number');
      this.paxSize = Number(value);
    }
  }

  /** Checks that the Parser's entry `index` is the one busybox reads there; a refusal when it is not. */
  check(entry: ReadEntry, index: number): void {
    const seen = this.seen.get(index);
    this.seen.delete(index);
    const differs = (what: string) =>
      new Refusal(`entry "${shown(entry.path)}" reads differently with the guest's tar (${what}); the tar is refused, as the guest would not extract what is checked`);
    if (!seen) throw new Refusal(`the tar reads differently with the guest's tar (${this.problem ?? 'an entry that it does not see'})`);
    const type = TYPES[seen.flag] === 'File' && seen.path.endsWith('/') ? 'Directory' : TYPES[seen.flag];
    if (entry.type !== entry.header.type || entry.type !== type) throw differs(`type ${type}, not ${entry.type}`);
    if (entry.path !== seen.path) throw differs(`name "${shown(seen.path)}"`);
    if (type !== 'Directory' && seen.path.endsWith('/')) throw differs('a name with a trailing slash, which busybox takes for a directory');
    if ((type === 'Link' || type === 'SymbolicLink') && entry.linkpath !== seen.linkpath) throw differs(`link target "${shown(seen.linkpath ?? '')}"`);
    if (seen.paxSize !== undefined && seen.paxSize !== seen.size) throw differs('a pax size, which busybox does not read');
    const dataSize = type === 'File' || type === 'ContiguousFile' ? seen.size : 0;
    if (type !== 'Directory' && (seen.size !== dataSize || entry.size !== dataSize)) throw differs(`${seen.size} bytes of data, which busybox ${dataSize ? 'reads as' : 'does not read for'} a ${type}`);
  }
}
