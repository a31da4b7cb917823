import { execa } from 'execa';
import { CLI, TEST_CACHE } from './helpers/env.js';

/** Makes the debian box once per test run (kept when the test cache already has a current one). */
export default async function setup(): Promise<void> {
  await execa(process.execPath, [CLI, 'box', 'fetch', 'debian'], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE }, stdio: 'inherit' });
}
