import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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

test.skipIf(process.getuid?.() !== 0)('a build whose log does not fit on the disk: one warning, its output and status as they are, no empty log', { timeout: 300_000 }, async () => {
  const dir = tempDir('bb-faults-full-log-');
  const desc = join(dir, 'desc');
  mkdirSync(desc);
  writeFileSync(join(desc, 'build'), '#!/bin/sh\nseq 1 20000\nexit 3\n', { mode: 0o755 });
  const tmp = tempDir('tmp-');
  // The logs of the test cache on a full file system, seen by this mount namespace alone.
  const logs = join(TEST_CACHE, 'logs');
  const script = `set -e
mkdir -p "${logs}" && mount -t tmpfs -o size=64k tmpfs "${logs}" && { head -c 1M /dev/zero >"${logs}/fill" 2>/dev/null || true; }
echo "== run"; BOXBUILD_CACHE_DIR="${TEST_CACHE}" TMPDIR="${tmp}" "${process.execPath}" "${CLI}" --box debian --accel tcg -- --description "${desc}" --target-dir "${dir}/out" >"${dir}/stdout" 2>"${dir}/stderr" || echo "status $?"
echo "== stderr"; cat "${dir}/stderr"
echo "== logs"; ls "${logs}"
echo "== end"
`;
  const { stdout } = await execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { timeout: 280_000 });
  const sections = Object.fromEntries(stdout.split(/^== /m).slice(1).map((part) => [part.slice(0, part.indexOf('\n')), part.slice(part.indexOf('\n') + 1).trim()]));
  expect(sections.run).toBe('status 3');
  expect(readFileSync(join(dir, 'stdout'), 'utf8')).toBe(`${Array.from({ length: 20000 }, (_, index) => index + 1).join('\n')}\n`);
  expect(sections.stderr).toBe(
    `boxbuild: warning: cannot keep the build's log in ${logs}: ENOSPC: no space left on device, write; the build goes on\nboxbuild: the build failed with exit status 3`,
  );
  expect(sections.logs).toBe('fill');
  expectNoLeftovers(tmp);
});
