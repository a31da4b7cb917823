import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';

/** The worker: hashes each chunk it gets and acknowledges its size; `null` asks for the digest. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const hash = require('node:crypto').createHash('sha256');
parentPort.on('message', (chunk) => {
  if (chunk === null) return parentPort.postMessage(hash.digest('hex'));
  hash.update(chunk);
  parentPort.postMessage(chunk.byteLength);
});`;

/** Bytes handed to the worker and not yet hashed, beyond which writes wait. */
const IN_FLIGHT_LIMIT = 32 << 20;

/**
 * A writable stream that computes a sha256 on a worker thread, so that hashing a download runs
 * beside receiving and writing it instead of slowing it down.
 */
export class Sha256Stream extends Writable {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private inFlight = 0;
  private blocked?: () => void;
  private readonly result: Promise<string>;

  constructor() {
    super({ highWaterMark: 4 << 20 });
    this.result = new Promise((resolve, reject) => {
      this.worker.on('message', (message: number | string) => {
        if (typeof message === 'string') {
          resolve(message);
          return;
        }
        this.inFlight -= message;
        if (this.inFlight <= IN_FLIGHT_LIMIT && this.blocked) {
          const unblock = this.blocked;
          this.blocked = undefined;
          unblock();
        }
      });
      this.worker.on('error', reject);
    });
    this.result.catch((error: Error) => this.destroy(error));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.worker.postMessage(chunk);
    this.inFlight += chunk.length;
    if (this.inFlight > IN_FLIGHT_LIMIT) this.blocked = callback;
    else callback();
  }

  /** Asks for the digest once every chunk is handed over; the stream finishes when it is there. */
  override _final(callback: (error?: Error | null) => void): void {
    this.worker.postMessage(null);
    this.result.then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.worker.terminate().then(() => callback(error), callback);
  }

  /** Feeds the contents of a file (the part of a download that is already on disk). */
  async writeFile(path: string): Promise<void> {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      if (!this.write(chunk)) await once(this, 'drain');
    }
  }

  /** The hex digest of everything written; ends the stream. */
  async digest(): Promise<string> {
    if (!this.writableEnded) this.end();
    await finished(this);
    return this.result;
  }
}

/** The sha256 of a file, read once. */
export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) hash.update(chunk);
  });
  return hash.digest('hex');
}
