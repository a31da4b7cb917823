import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, createReadStream, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated, startIsolated, untilOutput } from '../helpers/box-cli.js';
import { processesMentioning, tempDir } from '../helpers/temp.js';

const BACKENDS = ['9p', 'virtiofs', 'sshfs'] as const;
/** Larger than any buffer or request a backend uses (9p msize, FUSE and SFTP requests), many times over. */
const BIG = 96 * 1024 * 1024;
/** The host process that serves a backend's shares (for 9p, QEMU itself). */
const SERVER = { '9p': /qemu-system-x86_64/, virtiofs: /virtiofsd/, sshfs: /sftp-server/ };

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The guest side of the suite: prints ALL-OK, or FAIL and what failed. */
const GUEST_SUITE = `#!/bin/sh
t=$1
fail() { echo "FAIL: $*"; exit 1; }
cp big "$t/big" || fail "copying the big file"
mkdir "$t/many" "$t/moved"
i=0
while [ $i -lt 2000 ]; do : >"$t/many/f$i" || fail "create f$i"; i=$((i + 1)); done
[ "$(ls "$t/many" | wc -l)" = 2000 ] || fail "listing 2000 created files"
mv "$t"/many/* "$t/moved/" || fail "renaming 2000 files"
[ "$(ls "$t/many" | wc -l)" = 0 ] && [ "$(ls "$t/moved" | wc -l)" = 2000 ] || fail "listing after rename"
rm -r "$t/moved" || fail "removing 2000 files"
echo inside >"$t/real" && ln -s real "$t/link" || fail "making a symlink"
[ "$(cat "$t/link")" = inside ] || fail "reading through a symlink"
for link in escape-absolute escape-relative; do
  if cat "$link" 2>/dev/null | grep -q HOST-SECRET; then fail "$link exposes a host file"; fi
done
exec 7>"$t/unlinked" && rm "$t/unlinked" && echo hello >&7 || fail "open, unlink, write"
[ "$(stat -L -c %s /proc/$$/fd/7)" = 6 ] || fail "fstat after unlink"
exec 7>&-
if touch new-file 2>/dev/null || echo x 2>/dev/null >>build; then fail "the description is writable"; fi
echo ALL-OK
`;

describe.each(BACKENDS)('sharing over %s', (backend) => {
  let description: string;
  let bigSha: string;
  beforeAll(async () => {
    const root = tempDir();
    description = join(root, 'description');
    mkdirSync(description);
    writeFileSync(join(description, 'build'), GUEST_SUITE);
    chmodSync(join(description, 'build'), 0o755);
    const big = await open(join(description, 'big'), 'w');
    for (let written = 0; written < BIG; written += 16 << 20) await big.write(randomBytes(16 << 20));
    await big.close();
    bigSha = await sha256(join(description, 'big'));
    writeFileSync(join(root, 'secret.txt'), 'HOST-SECRET\n');
    symlinkSync(join(root, 'secret.txt'), join(description, 'escape-absolute'));
    symlinkSync('../secret.txt', join(description, 'escape-relative'));
  });

  // 96 MiB through the guest's ssh cipher under TCG: 15 s on a quiet host, more beside other VMs.
  test('big files, 2000 small files, symlinks, unlinked files, a read-only description', { timeout: 360_000 }, async () => {
    const target = join(tempDir(), 'target');
    const result = await runIsolated(['--box', 'debian', '--accel', 'tcg', '-q', `--sharing=${backend}`, '--', '--description', description, '--target-dir', target]);
    expect(result.stdout).toBe('ALL-OK');
    expect(result.exitCode).toBe(0);
    expect(await sha256(join(target, 'big'))).toBe(bigSha);
    expect(readdirSync(join(target, 'many'))).toEqual([]);
    expect(existsSync(join(target, 'moved'))).toBe(false);
    expect(lstatSync(join(target, 'link')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(target, 'link'))).toBe('real');
    expect(existsSync(join(target, 'unlinked'))).toBe(false);
    expect(lstatSync(join(target, 'big')).uid).toBe(process.getuid!());
    expect(existsSync(join(description, 'new-file'))).toBe(false);
  });

  test('two builds at once do not collide', async () => {
    const dirs = [tempDir(), tempDir()];
    const results = await Promise.all(
      dirs.map((dir, index) =>
        runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', `--sharing=${backend}`, '--share', `${dir}:/out`, '--', 'sh', '-c', `echo run-${index} > /out/who; cat /out/who`]),
      ),
    );
    expect(results.map((r) => [r.exitCode, r.stdout])).toEqual([
      [0, 'run-0'],
      [0, 'run-1'],
    ]);
    dirs.forEach((dir, index) => expect(readFileSync(join(dir, 'who'), 'utf8')).toBe(`run-${index}\n`));
  });

  test('SIGINT mid-build leaves no QEMU, daemon, socket or temp directory', async () => {
    const dir = tempDir();
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', `--sharing=${backend}`, '--share', `${dir}:/out`, '--', 'sh', '-c', 'echo started; sleep 600']);
    await untilOutput(child, 'started');
    expect(processesMentioning(tmp).join('\n')).toMatch(SERVER[backend]);
    child.kill('SIGINT');
    expect((await child).exitCode).toBe(130);
    expectNoLeftovers(tmp);
  });
});

describe('sharing auto', () => {
  test('picks virtiofs here (a usable virtiofsd exists) and says so once', async () => {
    const dir = tempDir();
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '--sharing', 'auto', '--share', `${dir}:/out`, '--', 'sh', '-c', 'mount | grep " /out "']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('type virtiofs');
    expect(result.stderr.match(/sharing: virtiofs \(auto: .*virtiofsd is usable\)/g)).toHaveLength(1);
  });

  test('a virtiofsd that is not one gives a clear error; auto then uses 9p', async () => {
    const dir = tempDir();
    const args = ['exec', '--box', 'debian', '--accel', 'tcg', '--virtiofsd', '/bin/true', '--share', `${dir}:/out`];
    const forced = await runIsolated([...args, '--sharing', 'virtiofs', '--', 'true']);
    expect(forced.exitCode).toBe(71);
    expect(forced.stderr).toMatch(/^boxbuild: error: virtiofs sharing is not usable: \/bin\/true is not a virtiofsd$/m);
    const auto = await runIsolated([...args, '--sharing', 'auto', '--', 'sh', '-c', 'mount | grep " /out "']);
    expect(auto.exitCode).toBe(0);
    expect(auto.stdout).toContain('type 9p');
    expect(auto.stderr).toContain('sharing: 9p (auto: /bin/true is not a virtiofsd)');
  });
});
