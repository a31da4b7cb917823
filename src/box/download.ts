import { createWriteStream } from 'node:fs';
import { rm, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Got, Response } from 'got';
import pRetry from 'p-retry';
import { BoxbuildError } from '../errors.js';
import { describeNetError } from './failures.js';
import { HttpStatusError, type NetOptions, TruncatedError, isTransient } from './http.js';
import { Sha256Stream } from './hash.js';
import { DownloadMeter, TooLargeError } from './meter.js';
import { formatBytes } from '../util/size.js';
import { stoppedError } from './failures.js';
import { type ProgressOutput, startProgress } from './progress.js';
import { PRIVATE_FILE } from './modes.js';

/** What every request of one box operation shares. */
export interface NetContext {
  client: Got;
  net: NetOptions;
  /** Download progress; none when quiet. */
  progress?: ProgressOutput;
  /** Retry notices and warnings. */
  log: (line: string) => void;
  signal?: AbortSignal;
}

/** A downloaded file whose content is not what its checksum says; it is deleted, never retried from the same mirror. */
export class ChecksumError extends Error {
  constructor(expected: string, actual: string) {
    super(`its sha256 is ${actual}, but ${expected} was expected (the download was discarded)`);
    this.name = 'ChecksumError';
  }
}

export interface DownloadResult {
  size: number;
  lastModified?: string;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Runs `task` under the retry policy: exponential backoff on network errors, timeouts and 5xx; 4xx fail at once. */
export function withRetries<T>(ctx: NetContext, label: string, task: () => Promise<T>): Promise<T> {
  return pRetry(task, {
    retries: ctx.net.retries,
    factor: 2,
    minTimeout: ctx.net.minBackoffMs,
    maxTimeout: ctx.net.maxBackoffMs,
    signal: ctx.signal,
    // A request the signal stopped (Ctrl-C, a deadline) failed for that reason alone: it is not tried again, nor said to be.
    shouldRetry: ({ error }) => !ctx.signal?.aborted && isTransient(error),
    onFailedAttempt: ({ error, retriesLeft }) => {
      if (!ctx.signal?.aborted && isTransient(error) && retriesLeft > 0) ctx.log(`${label}: ${describeNetError(error)}; trying again`);
    },
  });
}

/** A signal of one request, following the operation's: got leaves a listener on the signal it is given, one per request. */
export const requestSignal = (ctx: Pick<NetContext, 'signal'>) => ctx.signal && AbortSignal.any([ctx.signal]);

/** Resolves with the response headers of a got stream (its body not yet read). */
function responseOf(stream: ReturnType<Got['stream']>): Promise<Response> {
  return new Promise((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
  });
}

/** The first byte and the total size of a 206 answer ("bytes 100-999/1000"). */
function contentRange(headers: IncomingHttpHeaders): { start: number; total?: number } | undefined {
  const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(headers['content-range'] ?? '');
  return match ? { start: Number(match[1]), total: match[2] === '*' ? undefined : Number(match[2]) } : undefined;
}

/** The download error of a full disk: one line; the partial file is removed to give the space back. */
function diskFull(label: string, partial: string, total: number | undefined): BoxbuildError {
  const size = total === undefined ? '' : ` (${formatBytes(total)})`;
  return new BoxbuildError('boxUnavailable', `cannot download ${label}${size}: no space left on device in ${dirname(partial)}`);
}

/** Gives up what a download wrote from `offset` on: the whole file, or its end after an earlier file's bytes. */
async function discard(partial: string, offset: number): Promise<void> {
  if (offset > 0) await truncate(partial, offset).catch(() => {});
  else await rm(partial, { force: true });
}

/** One attempt: continues `partial` (from `offset` on) with a Range request, hashing as it streams. */
async function downloadOnce(ctx: NetContext, url: string, partial: string, sha256: string, label: string, offset: number): Promise<DownloadResult> {
  const have = Math.max(0, (await fileSize(partial)) - offset);
  const stream = ctx.client.stream(url, { headers: have > 0 ? { range: `bytes=${have}-` } : {}, signal: requestSignal(ctx) });
  stream.on('error', () => {}); // errors arrive through responseOf and pipeline
  const response = await responseOf(stream);
  const range = response.statusCode === 206 ? contentRange(response.headers) : undefined;
  if (have > 0 && (response.statusCode === 416 || (response.statusCode === 206 && range?.start !== have))) {
    // The server cannot continue the partial file: start over.
    stream.destroy();
    await discard(partial, offset);
    return downloadOnce(ctx, url, partial, sha256, label, offset);
  }
  if (response.statusCode >= 300 || (response.statusCode === 206 && !range)) {
    stream.destroy();
    throw new HttpStatusError(response.statusCode, response.statusMessage, url, response.headers['www-authenticate']);
  }
  const start = range ? have : 0;
  const length = Number(response.headers['content-length'] ?? Number.NaN);
  const total = range?.total ?? (Number.isFinite(length) ? start + length : undefined);
  if (total !== undefined && total > ctx.net.maxBytes) {
    stream.destroy();
    throw new TooLargeError(ctx.net.maxBytes, total);
  }

  const hash = new Sha256Stream();
  try {
    if (start > 0) await hash.writeFile(partial, offset);
    const progress = ctx.progress && startProgress(ctx.progress, label, total, start);
    const limits = { maxBytes: total ?? ctx.net.maxBytes, minRate: ctx.net.minRate, windowMs: ctx.net.slowWindowMs };
    const meter = new DownloadMeter(start, hash, limits, (written) => progress?.update(written));
    // When the connection fails, the body ends there instead, so that all that arrived is written for
    // the next attempt to resume; a failure of the meter or the file stops the pipeline at once.
    let connectionFailure: unknown;
    const body = async function* () {
      try {
        yield* stream;
      } catch (error) {
        connectionFailure = error;
      }
    };
    if (start === 0 && offset > 0) await truncate(partial, offset);
    const file = createWriteStream(partial, { flags: start > 0 || offset > 0 ? 'a' : 'w', mode: PRIVATE_FILE, highWaterMark: 4 << 20 });
    const failure = await pipeline(body, meter, file).then(
      () => connectionFailure,
      (error: unknown) => error,
    );
    progress?.finish(!failure);
    if ((failure as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC') {
      await discard(partial, offset);
      throw diskFull(label, partial, total);
    }
    if (failure instanceof TooLargeError) await discard(partial, offset);
    if (failure) throw failure;
    if (total !== undefined && meter.bytes !== total) throw new TruncatedError(meter.bytes, total);
    const actual = await hash.digest();
    if (actual !== sha256) {
      await discard(partial, offset);
      throw new ChecksumError(sha256, actual);
    }
    return { size: meter.bytes, lastModified: response.headers['last-modified'] };
  } finally {
    hash.destroy();
  }
}

/**
 * Downloads `url` into `partial`, resuming from what an earlier attempt or run left there,
 * with retries, and verifies it against `sha256`. The partial file is named by that checksum,
 * so a resumed download always continues the same content. With `offset`, the download is the
 * part of the file from there on (the bytes before it are earlier parts, kept as they are).
 */
export function downloadFile(ctx: NetContext, url: string, partial: string, sha256: string, label: string, offset = 0): Promise<DownloadResult> {
  return withRetries(ctx, label, () => downloadOnce(ctx, url, partial, sha256, label, offset));
}

export interface SmallResponse {
  /** Undefined when the server answered 304 Not Modified. */
  body?: Buffer;
  etag?: string;
  lastModified?: string;
  contentType?: string;
}

/** A small file boxbuild fetches besides a box's own files, and the most it may be. */
export interface SmallFile {
  what: string;
  maxBytes: number;
}

export const CHECKSUM_FILE: SmallFile = { what: 'checksum file', maxBytes: 64 << 10 };
export const SIGNATURE_FILE: SmallFile = { what: 'signature', maxBytes: 64 << 10 };
export const PACKAGE_LIST: SmallFile = { what: 'package list', maxBytes: 4 << 20 };

const tooLarge = (kind: SmallFile, url: string, announced?: number) =>
  new Error(`${kind.what} ${url} is larger than ${formatBytes(kind.maxBytes)}, the most a ${kind.what} may be${announced === undefined ? '' : ` (the server announced ${formatBytes(announced)})`}`);

/**
 * GETs a small file (a checksum sidecar, a signature, a package list) in one request,
 * conditionally when validators are given. A body larger than the kind allows is cut off there
 * (never retried: a server sending that much is not worth asking again).
 */
export async function fetchSmall(ctx: NetContext, url: string, kind: SmallFile, validators: { etag?: string; lastModified?: string } = {}, extra: Record<string, string> = {}): Promise<SmallResponse> {
  const headers: Record<string, string> = { ...extra };
  if (validators.etag) headers['if-none-match'] = validators.etag;
  if (validators.lastModified) headers['if-modified-since'] = validators.lastModified;
  const stream = ctx.client.stream(url, { headers, signal: requestSignal(ctx) });
  stream.on('error', () => {}); // errors arrive through responseOf and the reading below
  try {
    const response = await responseOf(stream);
    const meta = { etag: response.headers.etag, lastModified: response.headers['last-modified'], contentType: response.headers['content-type'] };
    if (response.statusCode === 304) return meta;
    if (response.statusCode >= 300) throw new HttpStatusError(response.statusCode, response.statusMessage, url, response.headers['www-authenticate']);
    const length = Number(response.headers['content-length'] ?? Number.NaN);
    if (length > kind.maxBytes) throw tooLarge(kind, url, length);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > kind.maxBytes) throw tooLarge(kind, url);
      chunks.push(chunk);
    }
    if (Number.isFinite(length) && size !== length) throw new TruncatedError(size, length);
    return { ...meta, body: Buffer.concat(chunks) };
  } finally {
    stream.destroy();
  }
}

/**
 * Fetches a small file with retries, all of them within `net.smallFileTimeoutMs`: a server that
 * trickles it (which no idle timeout notices) is given up on then, not retried.
 */
export async function fetchSmallFile(ctx: NetContext, label: string, url: string, kind: SmallFile, headers: Record<string, string> = {}): Promise<SmallResponse> {
  const deadline = AbortSignal.timeout(ctx.net.smallFileTimeoutMs);
  const bounded = { ...ctx, signal: ctx.signal ? AbortSignal.any([ctx.signal, deadline]) : deadline };
  try {
    return await withRetries(bounded, label, () => fetchSmall(bounded, url, kind, {}, headers));
  } catch (error) {
    if (!deadline.aborted || ctx.signal?.aborted) throw error;
    throw new Error(`${kind.what} ${url} did not arrive within ${ctx.net.smallFileTimeoutMs / 1000} s, the longest a ${kind.what} may take`, { cause: error });
  }
}

/** The error of a download stopped by Ctrl-C or SIGTERM (its partial file stays for the next run). */
export const downloadStopped = (signal: AbortSignal) => stoppedError(signal, 'a partial download resumes where it stopped next time');

/**
 * Tries `task` with each mirror URL in order and returns the first success. Fails with one
 * line naming the file (and the URL, or the last error and a line per mirror).
 */
export async function fromMirrors<T>(label: string, urls: string[], task: (url: string) => Promise<T>, signal?: AbortSignal): Promise<T> {
  const failures: string[] = [];
  const causes: unknown[] = [];
  for (const url of urls) {
    try {
      return await task(url);
    } catch (error) {
      if (signal?.aborted) throw downloadStopped(signal);
      if (error instanceof BoxbuildError) throw error;
      failures.push(`${url}: ${describeNetError(error)}`);
      causes.push(error);
    }
  }
  if (urls.length === 1) throw new BoxbuildError('boxUnavailable', `cannot download ${label} from ${failures[0]}`, { cause: causes[0] });
  throw new BoxbuildError('boxUnavailable', `cannot download ${label} from any of its ${urls.length} mirrors`, { detail: failures.join('\n'), cause: new AggregateError(causes, 'every mirror failed') });
}
