import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { formatBytes } from '../util/size.js';

/** A download that grew beyond the limit for one file: not retried, the next mirror is tried. */
export class TooLargeError extends Error {
  constructor(limit: number, announced?: number) {
    super(
      `larger than ${formatBytes(limit)}, the limit for one file${announced === undefined ? '' : ` (the server announced ${formatBytes(announced)})`}; BOXBUILD_MAX_DOWNLOAD raises it`,
    );
    this.name = 'TooLargeError';
  }
}

/** A download slower than the minimum rate over a whole window (a trickling server): retried, resuming. */
export class TooSlowError extends Error {
  constructor(bytes: number, windowMs: number, minRate: number) {
    super(`too slow: ${formatBytes(bytes)} in ${windowMs / 1000} s, less than ${formatBytes(minRate)}/s (BOXBUILD_MIN_RATE)`);
    this.name = 'TooSlowError';
  }
}

export interface MeterLimits {
  /** The most bytes the whole file may have. */
  maxBytes: number;
  /** Bytes per second the download must average over each window (0: no minimum). */
  minRate: number;
  windowMs: number;
}

/**
 * Passes a download's body through on its way to the file, feeding the hash (with its back
 * pressure) and counting bytes: it fails the download when the file grows beyond the size limit,
 * or when a window passes with less than the minimum rate.
 */
export class DownloadMeter extends Transform {
  private windowBytes = 0;
  private readonly timer?: NodeJS.Timeout;

  constructor(
    private written: number,
    private readonly hash: Writable,
    private readonly limits: MeterLimits,
    private readonly onProgress: (written: number) => void,
  ) {
    super();
    hash.once('error', (error) => this.destroy(error)); // a failed hash fails the download instead of leaving it waiting for 'drain'
    if (limits.minRate > 0) {
      this.timer = setInterval(() => this.checkRate(), limits.windowMs);
      this.timer.unref();
    }
  }

  get bytes(): number {
    return this.written;
  }

  private checkRate(): void {
    const { minRate, windowMs } = this.limits;
    if (this.windowBytes < (minRate * windowMs) / 1000) this.destroy(new TooSlowError(this.windowBytes, windowMs, minRate));
    this.windowBytes = 0;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.written += chunk.length;
    this.windowBytes += chunk.length;
    if (this.written > this.limits.maxBytes) {
      callback(new TooLargeError(this.limits.maxBytes));
      return;
    }
    this.onProgress(this.written);
    if (this.hash.write(chunk)) callback(null, chunk);
    else this.hash.once('drain', () => callback(null, chunk));
  }

  override _flush(callback: TransformCallback): void {
    clearInterval(this.timer);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearInterval(this.timer);
    callback(error);
  }
}
