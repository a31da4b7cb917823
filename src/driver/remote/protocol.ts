import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';

/*
 * What client and server say over the SSH session's stdin and stdout: frames of
 * `[type u8][length u32be][payload]`. Control frames carry JSON, data frames bytes. The server
 * speaks first (hello, with its version); the client answers with one request; then files, output
 * and the exit status travel as the request needs (see client.ts and server.ts).
 */

export const FRAME = {
  /** JSON Hello: both sides' first frame. */
  hello: 1,
  /** JSON Request: what the client wants run. */
  request: 2,
  /** JSON { hashes }: the description's file contents the server lacks. */
  want: 3,
  /** A file content the server wants: its sha256 (hex), then its bytes (blobData frames), then blobEnd. */
  blobStart: 4,
  blobData: 5,
  blobEnd: 6,
  /** The build's output, as it comes. */
  stdout: 7,
  stderr: 8,
  /** JSON TargetEntry, then (files) its bytes as entryData frames, then entryEnd. */
  entry: 9,
  entryData: 10,
  entryEnd: 11,
  /** JSON { code }: the run's exit status; the last frame. */
  exit: 12,
  /** JSON { message }: the server could not do what was asked; the last frame. */
  error: 13,
} as const;

export type FrameType = (typeof FRAME)[keyof typeof FRAME];

export interface Frame {
  type: number;
  payload: Buffer;
}

/** Largest payload taken: a data frame is at most CHUNK, a manifest of many files fits. */
export const MAX_PAYLOAD = 64 * 2 ** 20;
/** How file contents are cut into data frames. */
export const CHUNK = 2 ** 20;

export interface Hello {
  version: string;
}

/** One file of the description, as the client lists it. */
export interface ManifestEntry {
  /** Relative, "/"-separated, without "." or ".." parts. */
  path: string;
  type: 'dir' | 'file' | 'symlink';
  /** Permission bits (0o777 at most). */
  mode: number;
  /** file: its size and sha256 (hex). */
  size?: number;
  sha256?: string;
  /** symlink: where it points, as it is (never followed). */
  target?: string;
}

export type Request =
  | {
      kind: 'build';
      /** boxbuild's options for the build (what comes before `--`). */
      options: string[];
      /** The guest's --env variables, with their values. */
      env: Record<string, string>;
      /** The build arguments after `--` but --description and --target-dir. */
      rest: string[];
      manifest: ManifestEntry[];
    }
  | { kind: 'doctor'; json: boolean };

/** One entry of the target directory the server sends back. */
export interface TargetEntry {
  path: string;
  type: 'dir' | 'file' | 'symlink';
  mode: number;
  target?: string;
}

/** Thrown on input that breaks the protocol: a bad frame, an unexpected one, an unsafe path. */
export class ProtocolError extends Error {}

/** The other side went: the stream ended (or cannot be written any more). */
export class ConnectionEnded extends ProtocolError {}

export function encodeFrame(type: FrameType, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(5);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

export const jsonFrame = (type: FrameType, value: unknown) => encodeFrame(type, JSON.stringify(value));

/** Parses a control frame's JSON. */
export function parseJson<T>(frame: Frame): T {
  try {
    return JSON.parse(frame.payload.toString()) as T;
  } catch {
    throw new ProtocolError(`frame ${frame.type} is not JSON`);
  }
}

/** The frames of a byte stream, in order; ends with the stream (mid-frame: a ProtocolError). */
export async function* readFrames(stream: AsyncIterable<Buffer>): AsyncGenerator<Frame> {
  let buffered: Buffer = Buffer.alloc(0);
  for await (const chunk of stream) {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5) {
      const length = buffered.readUInt32BE(1);
      if (length > MAX_PAYLOAD) throw new ProtocolError(`a frame of ${length} bytes is too long`);
      if (buffered.length < 5 + length) break;
      yield { type: buffered.readUInt8(0), payload: buffered.subarray(5, 5 + length) };
      buffered = buffered.subarray(5 + length);
    }
  }
  if (buffered.length > 0) throw new ConnectionEnded('the stream ended inside a frame');
}

/** Writes frames to a stream, waiting while its buffer is full; rejects once the stream is gone (or `signal` aborts). */
export class FrameWriter {
  constructor(
    private readonly output: Writable,
    private readonly signal?: AbortSignal,
  ) {}

  async send(type: FrameType, payload?: Buffer | string): Promise<void> {
    if (this.output.destroyed || this.output.writableEnded) throw new ConnectionEnded('the connection is closed');
    if (!this.output.write(encodeFrame(type, payload))) await once(this.output, 'drain', { signal: this.signal });
  }

  json(type: FrameType, value: unknown): Promise<void> {
    return this.send(type, JSON.stringify(value));
  }

  /** Sends the bytes of `source` as `type` frames of CHUNK bytes at most. */
  async stream(type: FrameType, source: Readable): Promise<void> {
    for await (const chunk of source) {
      for (let at = 0; at < (chunk as Buffer).length; at += CHUNK) await this.send(type, (chunk as Buffer).subarray(at, at + CHUNK));
    }
  }
}

/** Reads frames one at a time, checking that each is of a type the protocol allows there. */
export class FrameReader {
  private readonly frames: AsyncGenerator<Frame>;

  constructor(stream: AsyncIterable<Buffer>) {
    this.frames = readFrames(stream);
  }

  /** The next frame, or undefined at the end of the stream. */
  async next(): Promise<Frame | undefined> {
    const { value, done } = await this.frames.next();
    return done ? undefined : value;
  }

  /** Reads and drops whatever else comes, to the end of the stream (whose writer is then never blocked). */
  drain(): void {
    void (async () => {
      while (!(await this.frames.next()).done);
    })().catch(() => {});
  }

  /** The next frame, which must be one of `types`. */
  async expect(...types: FrameType[]): Promise<Frame> {
    const frame = await this.next();
    if (!frame) throw new ConnectionEnded('the connection ended');
    if (!types.includes(frame.type as FrameType)) throw new ProtocolError(`unexpected frame ${frame.type} (expected ${types.join(' or ')})`);
    return frame;
  }
}

/** Checks a relative path from the other side: "/"-separated parts, none empty, ".", ".." or with NUL. */
export function checkRelativePath(path: unknown): string {
  if (typeof path !== 'string' || path === '' || path.startsWith('/') || path.includes('\0')) throw new ProtocolError(`unsafe path ${JSON.stringify(path)}`);
  if (path.split('/').some((part) => part === '' || part === '.' || part === '..')) throw new ProtocolError(`unsafe path ${JSON.stringify(path)}`);
  return path;
}

/** The payloads of `data` frames up to the `end` frame: one file's bytes. */
export async function* dataFrames(reader: FrameReader, data: FrameType, end: FrameType): AsyncGenerator<Buffer> {
  for (;;) {
    const frame = await reader.expect(data, end);
    if (frame.type === end) return;
    yield frame.payload;
  }
}
