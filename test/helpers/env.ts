import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(REPO, 'dist/cli.js');

/** The box cache the tests share: made once per run by the global setup, reused by every test. */
export const TEST_CACHE = process.env.BOXBUILD_TEST_CACHE ?? join(REPO, '.cache/test');
