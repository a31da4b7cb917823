import { execa } from 'execa';
import { CLI, TEST_CACHE } from './env.js';

/** Makes (or downloads) a box into the test cache; kept when the cache already has a current one. */
export async function fetchTestBox(name: string, arch: string): Promise<void> {
  await execa(process.execPath, [CLI, 'box', 'fetch', name, '--arch', arch], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE }, stdio: 'inherit' });
}
