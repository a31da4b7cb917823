import { Header } from 'tar';

/** A tar archive of regular files. */
export function tarOf(members: Record<string, Buffer>): Buffer {
  const blocks: Buffer[] = [];
  for (const [path, data] of Object.entries(members)) {
    const block = Buffer.alloc(512);
    new Header({ path, type: 'File', size: data.length, mode: 0o644, mtime: new Date(0) }).encode(block, 0);
    blocks.push(block, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}
