import { readFileSync } from 'node:fs';

/** boxbuild's version, from its package.json (one level up from both src/ and dist/). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
