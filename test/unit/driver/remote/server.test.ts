import { readdirSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FRAME, FrameReader, FrameWriter, parseJson } from '../../../../src/driver/remote/protocol.js';
import { serve } from '../../../../src/driver/remote/server.js';
import { VERSION } from '../../../../src/version.js';
import { tempDir } from '../../../helpers/temp.js';

/** A server on in-memory streams, and the client's ends of them. */
function session() {
  const toServer = new PassThrough();
  const fromServer = new PassThrough();
  const served = serve(toServer, fromServer, new AbortController().signal);
  return { served, client: new FrameWriter(toServer), replies: new FrameReader(fromServer) };
}

describe('boxbuild remote-serve', () => {
  let tmp: string;
  const saved = { ...process.env };
  beforeEach(() => {
    tmp = tempDir();
    process.env.BOXBUILD_CACHE_DIR = tempDir();
  });
  afterEach(() => {
    process.env = { ...saved };
  });

  test('it says its version first, and refuses a client of another one', async () => {
    const { served, client, replies } = session();
    expect(parseJson(await replies.expect(FRAME.hello))).toEqual({ version: VERSION });
    await client.json(FRAME.hello, { version: '0.0.0-other' });
    expect(parseJson(await replies.expect(FRAME.error))).toEqual({ message: `this build host runs boxbuild ${VERSION}, the client 0.0.0-other` });
    expect(await served).toBe(1);
  });

  test('a manifest that would write outside the run is refused before anything runs, and the run directory goes', async () => {
    process.env.TMPDIR = tmp;
    const { served, client, replies } = session();
    await replies.expect(FRAME.hello);
    await client.json(FRAME.hello, { version: VERSION });
    const manifest = [
      { path: 'l', type: 'symlink', mode: 0o777, target: '/' },
      { path: 'l/etc/x', type: 'file', mode: 0o644, size: 1, sha256: '0'.repeat(64) },
    ];
    await client.json(FRAME.request, { kind: 'build', options: [], env: {}, rest: [], manifest });
    expect(parseJson(await replies.expect(FRAME.error))).toEqual({ message: 'l/etc/x comes before its directory' });
    expect(await served).toBe(1);
    expect(readdirSync(tmp)).toEqual([]);
  });

  test('content it did not ask for is refused', async () => {
    process.env.TMPDIR = tmp;
    const { served, client, replies } = session();
    await replies.expect(FRAME.hello);
    await client.json(FRAME.hello, { version: VERSION });
    await client.json(FRAME.request, { kind: 'build', options: [], env: {}, rest: [], manifest: [{ path: 'f', type: 'file', mode: 0o644, size: 1, sha256: 'a'.repeat(64) }] });
    expect(parseJson(await replies.expect(FRAME.want))).toEqual({ hashes: ['a'.repeat(64)] });
    await client.send(FRAME.blobStart, 'b'.repeat(64));
    expect(parseJson(await replies.expect(FRAME.error))).toEqual({ message: `content ${'b'.repeat(64)} was not asked for` });
    expect(await served).toBe(1);
    expect(readdirSync(tmp)).toEqual([]);
  });
});
