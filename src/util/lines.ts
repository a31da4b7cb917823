import type { Readable } from 'node:stream';

/** What a line reader is told: each line (without its "\n"), or that a line grew past the limit. */
export interface LineHandlers {
  line: (line: string) => void;
  /** Called once; nothing more is read. */
  tooLong: () => void;
}

/**
 * Reads `input` line by line (UTF-8, "\n"-terminated), holding at most `maxBytes` of a line that has
 * not ended: a peer that never ends its line costs that much memory, not all there is (readline
 * would hold it whole, until the string outgrows V8 and boxbuild crashes).
 */
export function readLines(input: Readable, maxBytes: number, on: LineHandlers): void {
  let held: Buffer[] = [];
  let heldBytes = 0;
  const stop = () => {
    input.off('data', take);
    held = [];
    on.tooLong();
  };
  const take = (chunk: Buffer) => {
    let start = 0;
    for (let end = chunk.indexOf(10); end >= 0; end = chunk.indexOf(10, start)) {
      if (heldBytes + end - start > maxBytes) return stop();
      const line = heldBytes ? Buffer.concat([...held, chunk.subarray(start, end)]) : chunk.subarray(start, end);
      held = [];
      heldBytes = 0;
      start = end + 1;
      on.line(line.toString('utf8'));
    }
    if (start === chunk.length) return;
    held.push(chunk.subarray(start));
    heldBytes += chunk.length - start;
    if (heldBytes > maxBytes) stop();
  };
  input.on('data', take);
}
