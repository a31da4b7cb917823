import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { Parser, type ReadEntry } from 'tar';
import { BoxbuildError } from '../errors.js';
import type { ManifestFile } from './cache.js';
import { PRIVATE_FILE } from './modes.js';

/** The members a KIWI kernel tarball carries: `*.kernel` and `*.initrd`. */
const MEMBERS = { kernel: '.kernel', initrd: '.initrd' } as const;
type Member = keyof typeof MEMBERS;

/** Programs that decompress what tar (on Node 20) cannot: gzip it reads itself. */
const DECOMPRESSORS: { suffix: RegExp; program: string }[] = [
  { suffix: /\.(tar\.xz|txz)$/, program: 'xz' },
  { suffix: /\.(tar\.zst|tzst)$/, program: 'zstd' },
];

/** A member path that would land outside the directory it is unpacked into. */
function isUnsafe(path: string): boolean {
  return path.startsWith('/') || path.split(/[/\\]+/).includes('..');
}

/** The tarball's bytes as a tar stream, and a promise for the decompressor's success. */
function tarStream(tarball: string, name: string): { stream: Readable; done: Promise<unknown> } {
  const decompressor = DECOMPRESSORS.find(({ suffix }) => suffix.test(name));
  if (!decompressor) return { stream: createReadStream(tarball), done: Promise.resolve() };
  const child = execa(decompressor.program, ['-dc', tarball], { stdout: 'pipe', stderr: 'pipe', buffer: { stdout: false } });
  const done = child.catch((error: { code?: string; stderr?: string; shortMessage?: string }) => {
    if (error.code === 'ENOENT') throw new BoxbuildError('boxUnavailable', `unpacking ${name} needs the "${decompressor.program}" program; please install it`);
    throw new BoxbuildError('boxUnavailable', `cannot unpack ${name}: ${decompressor.program}: ${error.stderr?.trim() || error.shortMessage}`);
  });
  return { stream: child.stdout, done };
}

/**
 * Unpacks the kernel and the initrd of a kernel tarball (.tar.xz, .tar.zst, .tar.gz or .tar)
 * into `dir`, hashing them as they are written. A tarball with a member path that escapes
 * (absolute, or with "..") is refused whole; nothing but the two members is written.
 */
export async function unpackKernelTarball(tarball: string, name: string, dir: string): Promise<Record<Member, ManifestFile>> {
  const refuse = (why: string) => new BoxbuildError('boxUnavailable', `kernel tarball ${name} ${why}; it was refused`);
  const found: Partial<Record<Member, Promise<ManifestFile>>> = {};
  const parser = new Parser({ strict: true });
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
  });
  parser.on('entry', (entry: ReadEntry) => {
    if (isUnsafe(entry.path) || (entry.linkpath && isUnsafe(entry.linkpath))) {
      parser.abort(refuse(`has a member that points outside its directory ("${entry.path}")`));
      return;
    }
    const file = posix.basename(entry.path);
    const member = (Object.keys(MEMBERS) as Member[]).find((key) => file.endsWith(MEMBERS[key]));
    if (!member || entry.type !== 'File') {
      entry.resume();
      return;
    }
    if (found[member]) {
      parser.abort(refuse(`has more than one *${MEMBERS[member]} member`));
      return;
    }
    const hash = createHash('sha256');
    let size = 0;
    found[member] = pipeline(
      entry,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(join(dir, file), { mode: PRIVATE_FILE }),
    ).then(() => ({ name: file, sha256: hash.digest('hex'), size }));
  });

  const { stream, done } = tarStream(tarball, name);
  stream.on('error', (error) => parser.abort(error));
  stream.pipe(parser);
  try {
    await Promise.all([parsed, done]);
  } catch (error) {
    stream.destroy();
    await Promise.allSettled(Object.values(found));
    if (error instanceof BoxbuildError) throw error;
    // A failed decompressor explains an unreadable archive better than the parser does.
    throw (await done.then(() => undefined, (failure: unknown) => failure)) ?? refuse(`is not a valid tar archive (${(error as Error).message})`);
  }
  const kernel = await found.kernel;
  const initrd = await found.initrd;
  if (!kernel || !initrd) throw refuse(`has no *${MEMBERS[kernel ? 'initrd' : 'kernel']} member`);
  return { kernel, initrd };
}
