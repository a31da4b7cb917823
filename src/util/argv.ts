import { readFileSync } from 'node:fs';
import { usageError } from '../errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** This process's arguments as the kernel holds them (bytes); undefined where /proc is missing. */
function rawArguments(count: number): Buffer[] | undefined {
  try {
    const words: Buffer[] = [];
    const cmdline = readFileSync('/proc/self/cmdline');
    for (let start = 0; start < cmdline.length; ) {
      const end = cmdline.indexOf(0, start);
      words.push(cmdline.subarray(start, end < 0 ? cmdline.length : end));
      start = end < 0 ? cmdline.length : end + 1;
    }
    return words.length >= count ? words.slice(words.length - count) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Node decodes arguments as UTF-8 and makes every invalid byte U+FFFD, so an argument that is not
 * UTF-8 cannot be passed on as it was given: it is refused (a U+FFFD written as such is fine).
 */
export function refuseNonUtf8Arguments(argv: string[], raw = rawArguments(argv.length)): void {
  argv.forEach((arg, index) => {
    if (!arg.includes('\uFFFD')) return;
    try {
      const bytes = raw?.[index];
      if (bytes) return void utf8.decode(bytes);
    } catch {
      // not UTF-8
    }
    throw usageError(`argument ${JSON.stringify(arg)} is not valid UTF-8: boxbuild can only pass on UTF-8 arguments`);
  });
}
