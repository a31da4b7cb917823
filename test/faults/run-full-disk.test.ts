import { join } from 'node:path';
import { execa } from 'execa';
import { expect, test } from 'vitest';
import { expectNoLeftovers } from '../helpers/box-cli.js';
import { CLI, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/*
 * Saving the warm state is an optimisation: when the cache's disk is too full for the guest's RAM,
 * the run goes on (the paused VM is resumed), says so once and leaves no partial state.
 */

test.skipIf(process.getuid?.() !== 0)('a first run whose warm state does not fit into the cache runs cold, warns once and leaves no state', { timeout: 300_000 }, async () => {
  const dir = tempDir('bb-faults-full-');
  const cache = join(dir, 'cache');
  const tmp = tempDir('tmp-');
  const box = join(TEST_CACHE, 'boxes/debian', process.arch === 'arm64' ? 'aarch64' : 'x86_64');
  // The box fits, with 48 MiB to spare; the booted guest's RAM (about 90 MiB) does not.
  const script = `set -e
mkdir "${cache}"
size=$(( $(du -sk "${box}" | cut -f1) + 48 * 1024 ))k
mount -t tmpfs -o size=$size tmpfs "${cache}" && mkdir -p "${cache}/boxes/debian" && cp -a --sparse=always "${box}" "${cache}/boxes/debian/"
echo "== run"; BOXBUILD_CACHE_DIR="${cache}" TMPDIR="${tmp}" timeout -s KILL 240 "${process.execPath}" "${CLI}" exec --box debian --accel tcg -- echo hi 2>"${dir}/stderr" || echo "status $?"
echo "== stderr"; cat "${dir}/stderr"
echo "== states"; find "${cache}/states" -mindepth 1 2>/dev/null || true
echo "== end"
`;
  const { stdout } = await execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { timeout: 280_000 });
  const sections = Object.fromEntries(stdout.split(/^== /m).slice(1).map((part) => [part.slice(0, part.indexOf('\n')), part.slice(part.indexOf('\n') + 1).trim()]));
  expect(sections.run).toBe('hi');
  expect(sections.stderr).toMatch(/^boxbuild: warning: could not save the VM state for warm starts: .*No space left on device.*$/);
  expect(sections.states).toBe('');
  expectNoLeftovers(tmp);
});
