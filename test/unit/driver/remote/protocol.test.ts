import { Readable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { FRAME, FrameReader, ProtocolError, checkRelativePath, encodeFrame, readFrames } from '../../../../src/driver/remote/protocol.js';

async function collect(chunks: Buffer[]) {
  const frames = [];
  for await (const frame of readFrames(Readable.from(chunks))) frames.push({ type: frame.type, text: frame.payload.toString() });
  return frames;
}

describe('framing', () => {
  test('frames come out whole, whatever the chunks they arrive in', async () => {
    const bytes = Buffer.concat([encodeFrame(FRAME.hello, '{"version":"1"}'), encodeFrame(FRAME.stdout, 'out'), encodeFrame(FRAME.blobEnd)]);
    const expected = [
      { type: FRAME.hello, text: '{"version":"1"}' },
      { type: FRAME.stdout, text: 'out' },
      { type: FRAME.blobEnd, text: '' },
    ];
    expect(await collect([bytes])).toEqual(expected);
    expect(await collect([...bytes].map((byte) => Buffer.from([byte])))).toEqual(expected);
  });

  test('a stream that ends inside a frame, and an overlong frame, are protocol errors', async () => {
    await expect(collect([encodeFrame(FRAME.stdout, 'abc').subarray(0, 6)])).rejects.toThrow(ProtocolError);
    const huge = Buffer.from([FRAME.stdout, 0xff, 0xff, 0xff, 0xff]);
    await expect(collect([huge])).rejects.toThrow(/too long/);
  });

  test('expect() refuses a frame of another type, and the end of the stream', async () => {
    const reader = new FrameReader(Readable.from([encodeFrame(FRAME.stdout, 'x')]));
    await expect(reader.expect(FRAME.hello)).rejects.toThrow(/unexpected frame 7/);
    await expect(reader.expect(FRAME.hello)).rejects.toThrow(/connection ended/);
  });

  test.each(['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a\0b'])('path %j is refused', (path) => {
    expect(() => checkRelativePath(path)).toThrow(ProtocolError);
  });

  test.each(['a', 'a/b/c', '..a', 'a..'])('path %j is taken', (path) => {
    expect(checkRelativePath(path)).toBe(path);
  });
});
