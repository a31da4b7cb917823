import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { BACKENDS, hostileBuild, violations } from './hostile.js';
import { RUNNERS } from './runners.js';

/*
 * A hostile guest against every sharing backend, run by root and by an unprivileged user: whatever
 * it does, the host's side of the wall holds. Each check names the finding of issue 10 it covers.
 */

describe.each(RUNNERS)('a hostile guest, boxbuild run by %s', (runner) => {
  beforeAll(() => runner.prepare());

  describe.each(BACKENDS)('over %s', (backend) => {
    test('creates nothing special, foreign-owned or setuid in the target, and nothing outside it (findings 2-6)', async () => {
      const { root, description, target, victim } = hostileBuild(runner, 'hostile-fs.sh');
      const descriptionBefore = readdirSync(description).sort();
      const started = runner.start(['--box', 'debian', '-q', `--sharing=${backend}`, '--', '--description', description, '--target-dir', target]);
      // The old provenance writer used "<file>.<pid>.tmp": the guest learns the pid to plant a link there.
      writeFileSync(join(target, 'cli-pid'), String(started.pid));
      runner.own(join(target, 'cli-pid'));
      const result = await started.result;
      expect(result.stdout).toContain('HOSTILE-DONE');
      expect(result.exitCode).toBe(0);
      expect(violations(target, runner.ids())).toEqual([]);
      // Whatever the guest asked for, this did not happen on the host.
      expect(existsSync(join(target, 'block')) || existsSync(join(target, 'fifo'))).toBe(false);
      expect(readFileSync(victim, 'utf8')).toBe('VICTIM\n');
      const provenance = lstatSync(join(target, 'boxbuild-provenance.json'));
      expect(provenance.isFile()).toBe(true);
      expect(JSON.parse(readFileSync(join(target, 'boxbuild-provenance.json'), 'utf8'))).toMatchObject({ box: 'debian', sharing: backend });
      expect(readdirSync(description).sort()).toEqual(descriptionBefore);
      // 9p ignores the attach name: every reattached mount still was the target.
      if (backend === '9p') expect(readFileSync(join(target, 'aname-probe'), 'utf8')).toBe('attached with aname=/etc\n');
      expect(readdirSync(root).sort()).toEqual(['description', 'target', 'victim.txt']);
    });
  });

  test('a directory planted where the provenance file goes: one line, exit 71, nothing else left in the target', async () => {
    const { description, target } = hostileBuild(runner, 'provenance-dir.sh');
    const result = await runner.run(['--box', 'debian', '-q', '--', '--description', description, '--target-dir', target]);
    const planted = join(target, 'boxbuild-provenance.json');
    expect([result.exitCode, result.stderr]).toEqual([71, `boxbuild: error: cannot write the provenance file ${planted}: a directory is in its place (the build exited with status 0)`]);
    expect(readdirSync(target)).toEqual(['boxbuild-provenance.json']);
  });

  test('raw SFTP on the sshfs port reaches the share and nothing else (finding 1)', async () => {
    const { description, target } = hostileBuild(runner, 'raw-sftp.sh');
    const token = randomBytes(6).toString('hex');
    const result = await runner.run(['--box', 'debian', '-q', '--sharing=sshfs', '--', '--description', description, '--target-dir', target, token]);
    expect(result.stdout).toContain('RAW-SFTP-DONE');
    const replies = Object.fromEntries(result.stdout.split('\n').filter((line) => line.includes(': ')).map((line) => line.split(': ') as [string, string]));
    // The share works; nothing outside it can be created, read or even seen.
    expect(replies['create-plain']).toBe('102');
    for (const request of ['mkdir-usr-local', 'mkdir-etc', 'mkdir-root', 'open-etc-hostname', 'stat-usr-bin', 'open-proc', 'open-through-symlink']) {
      expect(replies[request], request).toMatch(/^101 [1-9]/);
    }
    for (const path of [`/usr/local/boxbuild-${token}`, `/etc/boxbuild-${token}`, `/boxbuild-${token}`]) expect(existsSync(path), path).toBe(false);
    expect(violations(target, runner.ids())).toEqual([]);
  });
});
