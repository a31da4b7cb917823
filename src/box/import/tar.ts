import type { Readable } from 'node:stream';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import { shown } from '../../util/shown.js';
import { GuestTarView, META_MAX } from './guest-tar.js';
import { Refusal } from './tree.js';

/*
 * A plain tar read entry by entry with the `tar` package's Parser, strictly: a bad header, a
 * truncated member, an entry of a type busybox tar does not extract alike (sparse files, GNU
 * dump dirs, unknown types: the Parser would skip them) or an archive without its end blocks is an
 * error; and every entry must be the one the guest's tar reads there (see guest-tar.ts), so that
 * what is checked here is what the guest extracts.
 */

/** Handles an entry: returns a promise when it reads the entry's data (it must read it whole), else the data is skipped. */
export type EntryHandler = (entry: ReadEntry, index: number) => Promise<void> | void;

/**
 * A writable stream that parses a plain tar; `done` resolves with the number of entries once every
 * one is handled and the archive has ended properly.
 */
export function tarSink(onEntry: EntryHandler): { sink: Writable; done: Promise<number> } {
  const parser = new Parser({ strict: true, zstd: false, maxMetaEntrySize: META_MAX });
  const view = new GuestTarView();
  /** Bytes held back, so that the Parser is written whole blocks (its long names are decoded per write: see GuestTarView). */
  let carry: Buffer = Buffer.alloc(0);
  const handling: Promise<void>[] = [];
  /** Entries whose data a handler is reading: a parse given up on leaves them unended, so they are failed with it. */
  const reading = new Set<ReadEntry>();
  let count = 0;
  let ended = false;
  let head = Buffer.alloc(0);
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
  });
  parsed.catch(() => {}); // awaited by `done`, or its error reaches the sink first
  parser.on('entry', (entry: ReadEntry) => {
    ended = false;
    const index = count++;
    try {
      view.check(entry, index);
      const handled = onEntry(entry, index);
      if (handled) {
        reading.add(entry);
        handling.push(
          handled
            .finally(() => reading.delete(entry))
            .catch((error: unknown) => {
              parser.abort(error as Error);
              throw error;
            }),
        );
        handling.at(-1)!.catch(() => {}); // awaited by `done`; until then its failure is the parser's
      } else {
        entry.resume();
      }
    } catch (error) {
      entry.resume();
      parser.abort(error as Error);
    }
  });
  parser.on('ignoredEntry', (entry: ReadEntry) => {
    ended = false;
    parser.abort(new Refusal(`entry "${shown(entry.path)}" is of a kind boxbuild does not import (${entry.type})`));
  });
  parser.on('nullBlock', () => (ended = true));
  parser.on('eof', () => (ended = true));

  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _encoding, callback) {
      if (head.length < 2) {
        head = Buffer.concat([head, chunk.subarray(0, 2)]);
        // The Parser would gunzip it itself: a plain tar never starts so, and the guest would not read it alike.
        if (head[0] === 0x1f && head[1] === 0x8b) return callback(new Refusal('the tar is compressed twice (gzip inside)'));
      }
      view.write(chunk);
      const data = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
      const whole = data.length - (data.length % 512);
      carry = data.subarray(whole);
      if (whole === 0 || parser.write(data.subarray(0, whole))) callback();
      else parser.once('drain', () => callback());
    },
    final(callback) {
      if (carry.length > 0) parser.end(carry);
      else parser.end();
      parsed.then(() => callback(), callback);
    },
    destroy(error, callback) {
      // Also called once finished (autoDestroy): then the handlers finish what they read.
      if (error) for (const entry of reading) entry.destroy(error);
      callback(error);
    },
  });
  parser.on('error', (error: Error) => sink.destroy(error));

  const done = (async () => {
    await parsed;
    await Promise.all(handling);
    if (!ended) throw new Refusal('the tar archive is truncated (it ends without its end-of-archive blocks)');
    return count;
  })();
  done.catch(() => {}); // the caller awaits it after the pipeline
  return { sink, done };
}

/** Parses the plain tar `input`; resolves with the number of entries. */
export async function readTar(input: Readable, onEntry: EntryHandler, signal?: AbortSignal): Promise<number> {
  const { sink, done } = tarSink(onEntry);
  await pipeline(input, sink, { signal });
  return done;
}

/** A parse error of the Parser's own (a bad header, a truncated member) as a refusal worded for the message; other errors as they are. */
export function tarFailure(error: unknown): unknown {
  const code = (error as { tarCode?: unknown } | undefined)?.tarCode;
  // TAR_ABORT: a handler's own error (a refusal, a full disk), which the parser was aborted with.
  if (error instanceof Refusal || typeof code !== 'string' || code === 'TAR_ABORT') return error;
  const message = (error as Error).message.replace(/^TAR_[A-Z_]+: /, '');
  return new Refusal(`not a valid tar archive (${message})`, { cause: error });
}
