import { execa } from 'execa';
import { CLI, TEST_CACHE } from './helpers/env.js';

/** Makes the debian boxes once per test run (kept when the test cache already has current ones). */
export default async function setup(): Promise<void> {
  for (const arch of ['x86_64', 'aarch64']) {
    await execa(process.execPath, [CLI, 'box', 'fetch', 'debian', '--arch', arch], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE }, stdio: 'inherit' });
  }
}
