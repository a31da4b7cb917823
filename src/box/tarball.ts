import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { Parser, type ReadEntry } from 'tar';
import { BoxbuildError } from '../errors.js';
import type { ManifestFile } from './cache.js';
import { formatBytes } from '../util/size.js';
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
    if (error.code === 'ENOENT') throw new BoxbuildError('boxUnavailable', `unpacking ${name} needs the "${decompressor.program}" program; please install it`, { cause: error });
    throw new BoxbuildError('boxUnavailable', `cannot unpack ${name}: ${decompressor.program}: ${error.stderr?.trim() || error.shortMessage}`, { cause: error });
  });
  return { stream: child.stdout, done };
}

/** Writes a member into `dir`, hashing it on the way. */
async function writeMember(entry: ReadEntry, dir: string, file: string): Promise<ManifestFile> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    entry,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(join(dir, file), { mode: PRIVATE_FILE }),
  );
  return { name: file, sha256: hash.digest('hex'), size };
}

/** The most a kernel tarball may unpack to (its members and their headers), and why, for the message. */
export interface UnpackLimit {
  bytes: number;
  why: string;
}

/** A kernel tarball may always unpack to UNPACK_FLOOR; beyond that, to at most UNPACK_RATIO times its size. */
const UNPACK_FLOOR = 256 * 2 ** 20;
const UNPACK_RATIO = 16;

/**
 * What a kernel tarball of `size` bytes may unpack to: its kernel and initrd are loaded into the
 * box's memory, so never more than that; and, beyond 256 MiB, at most 16 times its own size, so
 * that a small download cannot fill the disk (real kernel tarballs hold compressed kernels and
 * initrds: they unpack to about their own size).
 */
export function unpackLimit(memoryMiB: number, size: number): UnpackLimit {
  const memory = memoryMiB * 2 ** 20;
  const grown = Math.max(UNPACK_FLOOR, UNPACK_RATIO * size);
  if (memory <= grown) return { bytes: memory, why: "the box's memory, which its kernel and initrd are loaded into" };
  return { bytes: grown, why: `the most a tarball of ${formatBytes(size)} may unpack to (${UNPACK_RATIO} times its size, at least ${formatBytes(UNPACK_FLOOR)})` };
}

/**
 * Unpacks the kernel and the initrd of a kernel tarball (.tar.xz, .tar.zst, .tar.gz or .tar)
 * into `dir`, hashing them as they are written. A tarball with a member path that escapes
 * (absolute, or with "..") is refused whole, and so is one whose members (with their headers)
 * add up to more than `limit`; nothing but the two members is written. A failed write (a full
 * disk) is one line.
 */
export async function unpackKernelTarball(tarball: string, name: string, dir: string, limit: UnpackLimit): Promise<Record<Member, ManifestFile>> {
  const refuse = (why: string) => new BoxbuildError('boxUnavailable', `kernel tarball ${name} ${why}; it was refused`);
  const found: Partial<Record<Member, Promise<ManifestFile>>> = {};
  /** The members being written: an aborted parser leaves them unended, so their writes are failed with it. */
  const writing = new Set<ReadEntry>();
  let writeFailure: NodeJS.ErrnoException | undefined;
  let unpacked = 0;
  const parser = new Parser({ strict: true });
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
  });
  parser.on('entry', (entry: ReadEntry) => {
    unpacked += 512 + entry.size; // the header, and the member as its header announces it
    if (unpacked > limit.bytes) {
      parser.abort(refuse(`unpacks to more than ${formatBytes(limit.bytes)}, ${limit.why}`));
      return;
    }
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
    writing.add(entry);
    found[member] = writeMember(entry, dir, file)
      .finally(() => writing.delete(entry))
      .catch((error: NodeJS.ErrnoException) => {
        // A write that failed (a full disk) stops the unpacking at once.
        writeFailure ??= error;
        parser.abort(error);
        throw error;
      });
    found[member].catch(() => {}); // awaited below; until then, its failure is the parser's
  });

  const { stream, done } = tarStream(tarball, name);
  stream.on('error', (error) => parser.abort(error));
  stream.pipe(parser);
  try {
    await Promise.all([parsed, done]);
    const [kernel, initrd] = await Promise.all([found.kernel, found.initrd]);
    if (!kernel || !initrd) throw refuse(`has no *${MEMBERS[kernel ? 'initrd' : 'kernel']} member`);
    return { kernel, initrd };
  } catch (error) {
    const failedWrite = writeFailure; // before the writes still going on are failed with the error
    stream.destroy();
    for (const entry of writing) entry.destroy(error as Error);
    await Promise.allSettled([done, ...Object.values(found)]);
    if (failedWrite) {
      const why = failedWrite.code === 'ENOSPC' ? 'no space left on device' : failedWrite.message;
      throw new BoxbuildError('boxUnavailable', `cannot unpack kernel tarball ${name}: ${why} in ${dirname(dir)}`, { cause: failedWrite });
    }
    if (error instanceof BoxbuildError) throw error;
    // A failed decompressor explains an unreadable archive better than the parser does.
    throw (await done.then(() => undefined, (failure: unknown) => failure)) ?? refuse(`is not a valid tar archive (${(error as Error).message})`);
  }
}
