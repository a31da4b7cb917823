/**
 * A writer for the "newc" cpio format the Linux kernel unpacks as an initramfs.
 * Entries are written in the order given, owned by root, with a fixed mtime, so the
 * same inputs always give the same bytes (a reproducible box).
 */
export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'symlink'; path: string; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function header(fields: { ino: number; mode: number; nlink: number; size: number; nameSize: number }): string {
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  return (
    '070701' +
    [fields.ino, fields.mode, 0, 0, fields.nlink, 0, fields.size, 0, 0, 0, 0, fields.nameSize, 0].map(hex).join('')
  );
}

const pad4 = (length: number) => Buffer.alloc((4 - (length % 4)) % 4);

function record(ino: number, path: string, mode: number, nlink: number, data: Buffer): Buffer[] {
  const name = Buffer.from(`${path}\0`);
  const head = Buffer.from(header({ ino, mode, nlink, size: data.length, nameSize: name.length }), 'ascii');
  return [head, name, pad4(head.length + name.length), data, pad4(data.length)];
}

export function writeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((entry, index) => {
    const path = entry.path.replace(/^\/+/, '');
    const ino = index + 1;
    if (entry.type === 'dir') parts.push(...record(ino, path, S_IFDIR | (entry.mode ?? 0o755), 2, Buffer.alloc(0)));
    else if (entry.type === 'file') parts.push(...record(ino, path, S_IFREG | (entry.mode ?? 0o644), 1, entry.data));
    else parts.push(...record(ino, path, S_IFLNK | 0o777, 1, Buffer.from(entry.target)));
  });
  parts.push(...record(0, 'TRAILER!!!', 0, 1, Buffer.alloc(0)));
  return Buffer.concat(parts);
}
