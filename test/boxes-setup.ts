import { fetchTestBox } from './helpers/boxes.js';

/** The tiers that boot VMs: makes the debian boxes once per test run (kept when the test cache already has current ones). */
export default async function setup(): Promise<void> {
  for (const arch of ['x86_64', 'aarch64']) await fetchTestBox('debian', arch);
}
