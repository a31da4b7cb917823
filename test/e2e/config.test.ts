import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

/** A user config home and a project two levels above the current directory, each with its config file. */
function configured(user: object, project: object) {
  const home = tempDir();
  mkdirSync(join(home, 'boxbuild'));
  writeFileSync(join(home, 'boxbuild/config.json'), JSON.stringify(user));
  const root = tempDir();
  writeFileSync(join(root, '.boxbuild.json'), JSON.stringify(project));
  const cwd = join(root, 'src/deep');
  mkdirSync(cwd, { recursive: true });
  return { cwd, env: { XDG_CONFIG_HOME: home }, project: join(root, '.boxbuild.json'), user: join(home, 'boxbuild/config.json') };
}

describe('config files', () => {
  test('the project over the user, the command line over both; boxbuild config says where each came from', async () => {
    const { cwd, env, project, user } = configured({ memory: '512M', sharing: 'sshfs', box: 'debian' }, { sharing: 'virtiofs', bootTimeout: '90s' });
    const shown = JSON.parse((await runCli(['config', '--json'], { cwd, env })).stdout) as Array<{ name: string; value: unknown; from: string }>;
    const of = (name: string) => shown.find((row) => row.name === name);
    expect([of('box'), of('memory'), of('sharing'), of('bootTimeout'), of('accel'), of('network')]).toEqual([
      { name: 'box', option: '--box', value: 'debian', from: user },
      { name: 'memory', option: '--box-memory', value: '512M', from: user },
      { name: 'sharing', option: '--sharing', value: 'virtiofs', from: project },
      { name: 'bootTimeout', option: '--boot-timeout', value: '90s', from: project },
      { name: 'accel', option: '--accel', value: 'auto', from: 'default' },
      { name: 'network', option: '--network', value: 'filtered', from: 'default' },
    ]);
    const run = async (args: string[]) => {
      const result = join(tempDir(), 'result.json');
      const ran = await runIsolated(['exec', '--accel', 'tcg', '-q', '--result', result, ...args, '--', 'sh', '-c', 'grep MemTotal /proc/meminfo'], { cwd, env });
      expect(ran.exitCode, ran.stderr).toBe(0);
      return { memKiB: Number(/(\d+)/.exec(ran.stdout)![1]), sharing: JSON.parse(readFileSync(result, 'utf8')).sharing };
    };
    const fromFiles = await run([]); // --box from the user's file
    expect(fromFiles.sharing).toBe('virtiofs');
    expect(fromFiles.memKiB).toBeLessThan(512 * 1024);
    expect((await run(['--sharing', '9p'])).sharing).toBe('9p');
    expect((await run(['--sshfs-sharing'])).sharing).toBe('sshfs');
  });

  test('a setting it does not know, or a value its option would refuse: exit 2, naming the file', async () => {
    const unknown = configured({}, { memry: '1G' });
    const result = await runCli(['exec', '--box', 'debian', '--', 'true'], { cwd: unknown.cwd, env: unknown.env });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`^boxbuild: error: ${unknown.project}: unknown setting "memry" \\(known: box, arch, memory,`));
    const bad = configured({ network: 'no' }, {});
    const refused = await runCli(['config'], { cwd: bad.cwd, env: bad.env });
    expect([refused.exitCode, refused.stderr]).toEqual([2, `boxbuild: error: ${bad.user}: network: "no" is not a network: filtered (the default), full, none, or allow=HOST:PORT`]);
  });

  test("the network setting is --network's value: a config's mode is used, --network on the command line replaces it", async () => {
    const none = configured({ network: 'none' }, {});
    const ssh = await runCli(['exec', '--box', 'debian', '--channel', 'ssh', '--', 'true'], { cwd: none.cwd, env: none.env });
    expect([ssh.exitCode, ssh.stderr]).toEqual([2, 'boxbuild: error: --channel ssh reaches the guest over its network: it cannot go with --no-network (--network none)']);
    const full = configured({ network: 'full' }, {});
    // allow= would conflict with full were the config's value kept: the box lookup is what fails.
    const replaced = await runCli(['exec', '--box', 'no-such-box', '--network', 'allow=127.0.0.1:8080', '--', 'true'], { cwd: full.cwd, env: full.env });
    expect([replaced.exitCode, replaced.stderr]).toEqual([2, expect.stringMatching(/^boxbuild: error: unknown box "no-such-box"/)]);
  });
});
