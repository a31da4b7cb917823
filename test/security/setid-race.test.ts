import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from '../helpers/temp.js';
import { BACKENDS, guestSource, hostileBuild, violations } from './hostile.js';
import { RUNNERS } from './runners.js';

/*
 * Issue 25: a guest races for a set-id file on the host. Its threads ask for set-id files by every
 * path (mknod, open with O_CREAT or O_TMPFILE, chmod, fchmod, mkdir) and for whiteouts while others
 * hard-link whatever appears and write into it, as guest root and as guest user 1000; afterwards
 * nothing below the target is set-id or special on the host. One VM per backend and runner.
 *
 * A call the filter lets through that creates such a file outright is found every time. A window
 * inside one daemon request (QEMU's 9p mknod: mknodat, a failed fchownat, unlinkat) is hit only by
 * luck in seconds under TCG, where the guest sends a request every few milliseconds: the unit test
 * of the filter (test/unit/seccomp.test.ts) is what catches a rule that lets such a call through.
 */

const SECONDS = 3;
let race: string;

beforeAll(async () => {
  // The debian box has no compiler: the helper is built here, static, for the guest of the host's architecture.
  race = join(tempDir('bb-race-'), 'setid-race');
  await execa('gcc', ['-static', '-pthread', '-O2', '-o', race, guestSource('setid-race.c')]);
});

/** What the helper's two passes (guest root, then guest user 1000) got done. */
function passes(stdout: string): Array<{ plain: number; links: number }> {
  return [...stdout.matchAll(/^RACE-DONE uid=\d+ plain=(\d+) links=(\d+)$/gm)].map(([, plain, links]) => ({ plain: Number(plain), links: Number(links) }));
}

describe.each(RUNNERS)('a guest racing for a set-id file, boxbuild run by %s', (runner) => {
  beforeAll(() => runner.prepare());

  test.each(BACKENDS)('over %s leaves no set-id or special file on the host', async (backend) => {
    const { description, target } = hostileBuild(runner, 'setid-race.sh', [race]);
    // Bounded by boxbuild itself, so that a stall says where it was (in a quiet run each takes about 10 s).
    const result = await runner.run(['--box', 'debian', '-q', `--sharing=${backend}`, '--timeout', '120s', '--', '--description', description, '--target-dir', target, String(SECONDS)]);
    const report = result.stdout.split('\n').filter((line) => line.startsWith('RACE')).join('\n');
    // The host first, also after a run that did not end well.
    const { stdout: setId } = await execa('find', [target, '-perm', '/6000']);
    expect(setId, report).toBe('');
    expect(violations(target, runner.ids()), report).toEqual([]);
    expect(result.stdout, result.stderr).toContain('SETID-RACE-DONE');
    // The race ran: plain files were made and linked. Guest user 1000 makes files over 9p only:
    // virtiofsd cannot take on its ids, and sshfs lets no other guest user into its mount.
    const [asRoot, asUser] = passes(result.stdout);
    expect(asRoot!.plain, report).toBeGreaterThan(0);
    expect(asRoot!.links, report).toBeGreaterThan(0);
    if (backend === '9p') expect(asUser!.plain, report).toBeGreaterThan(0);
    // One CI-like run at load 8 saw the guest stall over virtiofs (as root) until it was killed, which
    // twenty runs by hand, loaded or not, never did: such a run is tried once more. A stall is the
    // guest's own loss; what the host must never see is checked first, on every run.
  }, { timeout: 300_000, retry: 1 });
});
