import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { Duplex, Transform, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { BoxbuildError } from '../../errors.js';
import { Child, lastWords } from '../../util/child.js';
import { readHead } from '../../util/file.js';
import { PRIVATE_FILE } from '../modes.js';
import { Refusal } from './tree.js';

/*
 * Byte streams of an import: compression told by magic (never by name or media type), xz and zstd
 * decompressed by their programs (Node 20's zlib has no zstd), gzip by zlib; sha256 taps.
 */

export type Compression = 'gzip' | 'xz' | 'zstd' | 'none';

const MAGICS: { compression: Exclude<Compression, 'none'>; magic: Buffer }[] = [
  { compression: 'gzip', magic: Buffer.from([0x1f, 0x8b]) },
  { compression: 'xz', magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) },
  { compression: 'zstd', magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]) },
];
/** How many first bytes compressionOf looks at. */
export const MAGIC_BYTES = 6;

export function compressionOf(head: Buffer): Compression {
  return MAGICS.find(({ magic }) => head.subarray(0, magic.length).equals(magic))?.compression ?? 'none';
}

/** A pass-through stream that hashes (sha256) and counts what passes. */
export class HashTap extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;
  private hex?: string;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null, data?: Buffer) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    callback(null, chunk);
  }

  /** The hex digest of everything that passed (once the stream has ended). */
  get sha256(): string {
    this.hex ??= this.hash.digest('hex');
    return this.hex;
  }
}

/** A decompressor in a pipeline, and its own failure (a truncated stream, a missing program), which explains an unreadable stream better than what reads its output. */
export interface Decompressor {
  stream: Duplex;
  failure(): Promise<Error | undefined>;
}

/** A duplex around `program -dc`: killed when destroyed; ends with an error when the program fails. */
class ProgramStream extends Duplex {
  private readonly child: Child;
  private stderr = '';
  failed?: Error;

  constructor(private readonly program: string) {
    super();
    this.child = new Child(program, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'], collect: false });
    const { stdin, stdout, stderr } = this.child.process;
    stdin!.on('error', () => {}); // EPIPE: the program stopped reading; its exit status says why
    stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4096)));
    stdout!.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) stdout!.pause();
    });
    stdout!.on('end', () => {
      void this.child.ended.then((end) => {
        this.failed = this.failure(end);
        if (this.failed) this.destroy(this.failed);
        else this.push(null);
      });
    });
    void this.child.ended.then((end) => {
      if (end.startError) this.destroy((this.failed = this.failure(end)));
    });
  }

  private failure(end: Awaited<Child['ended']>): Error | undefined {
    if (end.startError?.code === 'ENOENT') return new Refusal(`decompressing it needs the "${this.program}" program; please install it`, { cause: end.startError });
    if (end.startError) return new Error(`${this.program}: ${end.startError.message}`, { cause: end.startError });
    if (end.exitCode !== 0 && end.signal === undefined) return new Error(`${this.program}: ${lastWords(end, this.stderr)}`);
    return undefined;
  }

  /** The program's own failure, once it has ended (undefined when it did well or was killed). */
  async ownFailure(): Promise<Error | undefined> {
    const end = await this.child.ended;
    return this.failure(end);
  }

  override _read(): void {
    this.child.process.stdout!.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const stdin = this.child.process.stdin!;
    // A program that is gone reads no more: how it ended (on stdout's end) says why.
    if (stdin.destroyed || stdin.writableEnded || stdin.write(chunk)) return callback();
    const go = () => {
      stdin.off('drain', go).off('close', go);
      callback();
    };
    stdin.on('drain', go).on('close', go);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.child.process.stdin!.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.child.exited) this.child.process.kill('SIGKILL');
    this.child.process.stdin!.destroy();
    this.child.process.stdout!.destroy();
    callback(error);
  }
}

/** The decompressor of `compression`; undefined for none. */
export function decompressor(compression: Compression): Decompressor | undefined {
  if (compression === 'none') return undefined;
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    let failed: Error | undefined;
    gunzip.on('error', (error) => (failed ??= new Error(`gzip: ${error.message}`, { cause: error })));
    return { stream: gunzip, failure: async () => failed };
  }
  const stream = new ProgramStream(compression);
  return { stream, failure: () => stream.ownFailure() };
}

/**
 * The error to report for a failed pipeline with a decompressor: a refusal (of what was read) or a
 * one-line BoxbuildError as it is; else the decompressor's own failure when it failed; else `error`.
 */
export async function explained(error: unknown, decompress: Decompressor | undefined): Promise<unknown> {
  if (error instanceof Refusal || error instanceof BoxbuildError) return error;
  return (await decompress?.failure()) ?? error;
}

/** What unpackFile read and wrote. */
export interface Unpacked {
  compression: Compression;
  /** sha256 (hex) and size of the bytes read (as stored). */
  sha256: string;
  size: number;
  /** sha256 (hex) and size of the bytes written (decompressed). */
  plainSha256: string;
  plainSize: number;
}

/**
 * Copies `source` to `dest` (a new private file), decompressed by its magic when `decompress`,
 * hashing both sides.
 */
export async function unpackFile(source: string, dest: string, options: { decompress: boolean; signal?: AbortSignal }): Promise<Unpacked> {
  const compression = options.decompress ? compressionOf(await readHead(source, MAGIC_BYTES)) : 'none';
  const decompress = decompressor(compression);
  const read = new HashTap();
  const written = new HashTap();
  const input = createReadStream(source, { highWaterMark: 1 << 20 });
  const output = createWriteStream(dest, { mode: PRIVATE_FILE, flags: 'wx' });
  try {
    if (decompress) await pipeline(input, read, decompress.stream, written, output, { signal: options.signal });
    else await pipeline(input, read, written, output, { signal: options.signal });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw await explained(error, decompress);
  }
  return { compression, sha256: read.sha256, size: read.size, plainSha256: written.sha256, plainSize: written.size };
}

/** A writable stream that writes to all of `sinks`, and finishes when they all have. */
export function tee(sinks: Writable[]): Writable {
  const out: Writable = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _encoding, callback) {
      let waiting = 1;
      const done = () => {
        if (--waiting === 0) callback();
      };
      for (const sink of sinks) {
        if (!sink.write(chunk)) {
          waiting++;
          sink.once('drain', done);
        }
      }
      done();
    },
    final(callback) {
      Promise.all(sinks.map((sink) => (sink.end(), finished(sink)))).then(() => callback(), callback);
    },
    destroy(error, callback) {
      for (const sink of sinks) sink.destroy(error ?? undefined);
      callback(error);
    },
  });
  for (const sink of sinks) sink.on('error', (error) => out.destroy(error));
  return out;
}

/** The sha256 (hex) and size of a file, read once. */
export async function hashFile(path: string, signal?: AbortSignal): Promise<{ sha256: string; size: number }> {
  const tap = new HashTap();
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), tap, new Writable({ write: (_chunk, _encoding, callback) => callback() }), { signal });
  return { sha256: tap.sha256, size: tap.size };
}
