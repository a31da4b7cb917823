import { open } from 'node:fs/promises';
import { BoxbuildError, type ExitCodeName } from '../errors.js';
import { shown } from '../util/shown.js';

/*
 * What a disk image file is, read from its header by boxbuild itself: never by QEMU's probing, and
 * never by qemu-img, which opens the files an image names as it reads it. A qcow2 image can name
 * host files (a backing file, also as a `json:` file name, or an external data file) that QEMU
 * would open with the user's rights and show the guest: boxbuild opens only images that name no
 * other file, and tells QEMU their format.
 */

export type ImageFormat = 'raw' | 'qcow2';

/** A self-contained image: the format QEMU is told, and the size the guest sees (bytes). */
export interface ImageFile {
  format: ImageFormat;
  size: bigint;
}

/** Why boxbuild does not open an image: the rest of a sentence that starts with the image's name. */
export class ImageRefused extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ImageRefused';
  }
}

/** A qcow2 image's header extensions and backing file name lie in its first cluster, which is at most 2 MiB. */
const HEAD_BYTES = 2 << 20;

/** Formats QEMU would recognise by their first bytes, which boxbuild does not open (some name other files). */
const OTHER_FORMATS: { offset: number; magic: string; name: string }[] = [
  { offset: 0, magic: 'QED\0', name: 'QED' },
  { offset: 0, magic: 'KDMV', name: 'VMDK' },
  { offset: 0, magic: 'COWD', name: 'VMDK' },
  { offset: 0, magic: '# Disk DescriptorFile', name: 'VMDK descriptor' },
  { offset: 0, magic: 'vhdxfile', name: 'VHDX' },
  { offset: 0, magic: 'conectix', name: 'VHD' },
  { offset: 0x40, magic: '\x7f\x10\xda\xbe', name: 'VDI' },
  { offset: 0, magic: 'WithoutFreeSpace', name: 'Parallels' },
  { offset: 0, magic: 'WithouFreSpacExt', name: 'Parallels' },
  { offset: 0, magic: 'Bochs Virtual HD Image', name: 'Bochs' },
  { offset: 0, magic: 'LUKS\xba\xbe', name: 'LUKS' },
  { offset: 0, magic: '#!/bin/sh\n#V2.0 Format\nmodprobe cloop', name: 'cloop' },
];

const QCOW2_MAGIC = 'QFI\xfb';
/** Incompatible feature bit 2: the guest's data lives in an external data file. */
const QCOW2_EXTERNAL_DATA = 1n << 2n;
/** The incompatible feature bits QEMU 7.2 knows: dirty, corrupt, external data file, compression type, extended L2 entries. */
const QCOW2_KNOWN_INCOMPATIBLE = 0x1fn;
/** The header extension that holds the external data file's name ("DATA"). */
const QCOW2_DATA_FILE_EXTENSION = 0x44415441;

const startsWith = (head: Buffer, offset: number, magic: string) => head.subarray(offset, offset + magic.length).equals(Buffer.from(magic, 'latin1'));

const references = (what: string, name?: string) =>
  new ImageRefused(`names another file as its ${what}${name === undefined ? '' : ` (${shown(name)})`}; boxbuild opens only self-contained images`);

/** The data of the first header extension of `type` in head[start, end), if there is one. */
function headerExtension(head: Buffer, start: number, end: number, type: number): Buffer | undefined {
  for (let offset = start; offset + 8 <= end; ) {
    const found = head.readUInt32BE(offset);
    const length = head.readUInt32BE(offset + 4);
    if (found === 0) return undefined; // the end of the extensions
    if (found === type) return head.subarray(offset + 8, Math.min(offset + 8 + length, end));
    offset += 8 + Math.ceil(length / 8) * 8;
  }
  return undefined;
}

/** A qcow2 header (version 2 or 3, see QEMU's docs/interop/qcow2.txt) that names no other file. */
function qcow2(head: Buffer): ImageFile {
  const truncated = () => new ImageRefused('is a truncated qcow2 image');
  if (head.length < 72) throw truncated();
  const version = head.readUInt32BE(4);
  if (version === 1) throw new ImageRefused('is a qcow (version 1) image; boxbuild opens raw and qcow2 images');
  if (version !== 2 && version !== 3) throw new ImageRefused(`is a qcow2 image of version ${version}, which boxbuild does not know`);
  const backingOffset = head.readBigUInt64BE(8);
  const backingSize = head.readUInt32BE(16);
  if (backingOffset !== 0n || backingSize !== 0) {
    const start = Number(backingOffset);
    const name = start + backingSize <= head.length ? head.subarray(start, start + backingSize).toString('utf8') : undefined;
    throw references('backing file', name);
  }
  let headerLength = 72;
  let incompatible = 0n;
  if (version === 3) {
    if (head.length < 104) throw truncated();
    incompatible = head.readBigUInt64BE(72);
    headerLength = head.readUInt32BE(100);
  }
  const clusterEnd = Math.min(head.length, 2 ** Math.min(head.readUInt32BE(20), 31));
  const dataFile = headerExtension(head, headerLength, clusterEnd, QCOW2_DATA_FILE_EXTENSION);
  if (dataFile || incompatible & QCOW2_EXTERNAL_DATA) throw references('external data file', dataFile?.toString('utf8'));
  const unknown = incompatible & ~QCOW2_KNOWN_INCOMPATIBLE;
  if (unknown) throw new ImageRefused(`uses qcow2 features boxbuild does not know (incompatible feature bits 0x${unknown.toString(16)})`);
  return { format: 'qcow2', size: head.readBigUInt64BE(24) };
}

/**
 * The format and size of an image from its first bytes (`head`: the first HEAD_BYTES, or all of a
 * shorter file): qcow2 that names no other file, or raw (anything that is no image format QEMU
 * knows). Throws ImageRefused for anything else.
 */
export function inspectImage(head: Buffer, fileSize: number): ImageFile {
  if (startsWith(head, 0, QCOW2_MAGIC)) return qcow2(head);
  const other = OTHER_FORMATS.find(({ offset, magic }) => startsWith(head, offset, magic));
  if (other) throw new ImageRefused(`is a ${other.name} image; boxbuild opens raw and qcow2 images`);
  if (startsWith(head, 0, 'json:')) throw new ImageRefused('is not a disk image but a QEMU "json:" file name; boxbuild opens only self-contained images');
  return { format: 'raw', size: BigInt(fileSize) };
}

/** inspectImage of a file: its size and head read through one descriptor. */
export async function inspectImageFile(path: string): Promise<ImageFile> {
  const file = await open(path, 'r');
  try {
    const info = await file.stat();
    if (!info.isFile()) throw new ImageRefused('is not a regular file');
    const { buffer, bytesRead } = await file.read(Buffer.alloc(Math.min(info.size, HEAD_BYTES)), 0, Math.min(info.size, HEAD_BYTES), 0);
    return inspectImage(buffer.subarray(0, bytesRead), info.size);
  } finally {
    await file.close();
  }
}

/**
 * inspectImageFile, whose refusal (or a file that cannot be read) is one line of `kind` (usage for
 * a file the user gave, boxUnavailable for a box's disk) naming the image as `label`.
 */
export async function selfContainedImage(path: string, label: string, kind: ExitCodeName): Promise<ImageFile> {
  try {
    return await inspectImageFile(path);
  } catch (error) {
    const reason = error instanceof ImageRefused ? error.message : `cannot be read (${(error as Error).message})`;
    throw new BoxbuildError(kind, `${label} ${reason}`, { cause: error });
  }
}
