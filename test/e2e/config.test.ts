import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';
import { ensureUser } from '../helpers/user.js';

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
    const shown = JSON.parse((await runCli(['config', '--json'], { cwd, env })).stdout).settings as Array<{ name: string; value: unknown; from: string }>;
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

/** A registry that redefines the debian box and adds one of its own (whose name shows it was read). */
const PLANTED_BOX = { description: 'planted', protocol: 'boxbuild', make: 'debian', buildProgram: '/usr/lib/boxbuild/build', arches: { x86_64: {}, aarch64: {} } };
const PLANTED_REGISTRY = { boxes: { debian: PLANTED_BOX, planted: PLANTED_BOX } };

/** A project config naming a registry, both in `dir`, and a directory below it to run in. */
function project(dir: string, mode = 0o644) {
  writeFileSync(join(dir, 'boxes.json'), JSON.stringify(PLANTED_REGISTRY), { mode: 0o644 });
  writeFileSync(join(dir, '.boxbuild.json'), JSON.stringify({ box: 'planted', registries: ['boxes.json'] }));
  chmodSync(join(dir, '.boxbuild.json'), mode);
  const cwd = join(dir, 'proj');
  mkdirSync(cwd);
  return { cwd, config: join(dir, '.boxbuild.json'), registry: join(dir, 'boxes.json') };
}

interface Shown {
  settings: Array<{ name: string; value: unknown; from: string }>;
  skipped: Array<{ file: string; kind: string; namedBy?: string; reason: string }>;
}

/** What boxbuild config says in `cwd` (no user config), and which boxes box list names there, with its notices. */
async function seen(cwd: string) {
  const env = { XDG_CONFIG_HOME: tempDir() };
  const shown = JSON.parse((await runCli(['config', '--json'], { cwd, env })).stdout) as Shown;
  const listed = await runCli(['box', 'list', '--names', '--no-update-check'], { cwd, env });
  expect(listed.exitCode, listed.stderr).toBe(0);
  return { box: shown.settings.find((row) => row.name === 'box')!.value, skipped: shown.skipped, names: listed.stdout.split('\n'), notices: listed.stderr };
}

describe('config files someone else could have put there', () => {
  test.skipIf(process.getuid!() !== 0)('a project config another user planted in a directory of theirs is skipped with one notice; owned by root in a private directory it is read', async () => {
    const account = await ensureUser();
    const dir = tempDir();
    const { cwd, config, registry } = project(dir);
    for (const path of [dir, cwd, config, registry]) chownSync(path, account.uid, account.gid);
    const planted = await seen(cwd);
    const reason = `it is owned by uid ${account.uid}, not by you or root`;
    expect(planted.skipped).toEqual([{ file: config, kind: 'config file', reason }]);
    expect(planted.box).toBeNull();
    expect(planted.names).not.toContain('planted');
    expect(planted.notices).toBe(`boxbuild: skipped config file ${config}: ${reason}`);

    for (const path of [dir, cwd, config, registry]) chownSync(path, 0, 0);
    chmodSync(dir, 0o700);
    const own = await seen(cwd);
    expect([own.skipped, own.box, own.names.includes('planted'), own.notices]).toEqual([[], 'planted', true, '']);
  });

  test('an own config file writable by its group or everyone, or in a directory everyone can write, is skipped; in a sticky one it is read', async () => {
    const dir = tempDir();
    const { cwd, config } = project(dir, 0o664);
    const gid = process.getgid!();
    expect((await seen(cwd)).skipped).toEqual([{ file: config, kind: 'config file', reason: `it is writable by its group (gid ${gid})` }]);
    chmodSync(config, 0o646);
    expect((await seen(cwd)).notices).toBe(`boxbuild: skipped config file ${config}: it is writable by everyone`);
    chmodSync(config, 0o644);
    chmodSync(dir, 0o777);
    expect((await seen(cwd)).skipped).toEqual([{ file: config, kind: 'config file', reason: `its directory ${dir} is writable by everyone` }]);
    chmodSync(dir, 0o1777);
    const sticky = await seen(cwd);
    expect([sticky.skipped, sticky.box, sticky.names.includes('planted')]).toEqual([[], 'planted', true]);
  });

  test('a registry file a config file names is skipped when others can write it; the rest of the config file stands', async () => {
    const { cwd, config, registry } = project(tempDir());
    chmodSync(registry, 0o666);
    const shown = await seen(cwd);
    expect(shown.skipped).toEqual([{ file: registry, kind: 'box registry', namedBy: config, reason: 'it is writable by everyone' }]);
    expect([shown.box, shown.names.includes('planted')]).toEqual(['planted', false]);
    expect(shown.notices).toBe(`boxbuild: skipped box registry ${registry} (named by ${config}): it is writable by everyone`);
  });

  test("the user's own files too: a config.json and boxes.json in a directory everyone can write are skipped", async () => {
    const home = tempDir();
    const dir = join(home, 'boxbuild');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ box: 'planted' }));
    writeFileSync(join(dir, 'boxes.json'), JSON.stringify(PLANTED_REGISTRY));
    const cwd = tempDir();
    const env = { XDG_CONFIG_HOME: home };
    const reason = `its directory ${dir} is writable by everyone`;
    expect((JSON.parse((await runCli(['config', '--json'], { cwd, env })).stdout) as Shown).skipped).toEqual([{ file: join(dir, 'config.json'), kind: 'config file', reason }]);
    const listed = await runCli(['box', 'list', '--names', '--no-update-check'], { cwd, env });
    expect(listed.stdout).not.toContain('planted');
    expect(listed.stderr).toBe(`boxbuild: skipped config file ${join(dir, 'config.json')}: ${reason}\nboxbuild: skipped box registry ${join(dir, 'boxes.json')}: ${reason}`);
  });
});
