import { once } from 'node:events';
import { cpSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runIsolated, untilOutput } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { busyboxRoot, rootTarball } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/temp.js';
import { TEST_USER } from '../helpers/user.js';
import { RUNNERS, type Runner, asRoot } from '../security/runners.js';

/*
 * --container with real podman: a box imported from a busybox root file system runs builds and
 * commands in containers, as root (podman as root) and as an unprivileged user (rootless podman):
 * output streamed, exit status, the target's files the user's, provenance; the network modes against
 * a server on the host's loopback; --timeout and Ctrl-C leave no container; the image is made once
 * per box version; what a container cannot do is refused before anything starts.
 */

const RUN = randomBytes(3).toString('hex');
const BOX = `t-ctr-${RUN}`;
const TIMEOUT = 300_000;

/** podman as the runner's user (rootless podman for the unprivileged one). */
async function podmanAs(runner: Runner, args: string[]): Promise<string> {
  const command = runner === asRoot ? ['podman', ...args] : ['runuser', '-u', TEST_USER, '--', 'env', '-C', '/', 'podman', ...args];
  const { stdout } = await execa(command[0]!, command.slice(1), { env: { TMPDIR: undefined }, stderr: 'inherit' });
  return stdout;
}

/** The containers a run left, by the run directory their label names. */
const containersLeft = async (runner: Runner, tmp: string) =>
  (await podmanAs(runner, ['ps', '--all', '--filter', 'label=org.boxbuild.run', '--format', '{{index .Labels "org.boxbuild.run"}}'])).split('\n').filter((dir) => dir.startsWith(tmp));

/** The runner's podman images of the test box. */
const boxImages = async (runner: Runner) => (await podmanAs(runner, ['images', '--noheading', '--format', '{{.Repository}}:{{.Tag}}', `localhost/boxbuild/${BOX}`])).split('\n').filter(Boolean);

describe.each(RUNNERS)('--container, boxbuild run by %s', { timeout: TIMEOUT }, (runner) => {
  let tarball: string;
  beforeAll(async () => {
    await runner.prepare();
    const dir = runner.workspace();
    tarball = await rootTarball(await busyboxRoot(join(dir, 'root'), 'x86_64'), join(dir, 'root.tar'));
    runner.own(dir);
    const imported = await runner.run(['box', 'import', BOX, tarball, '-q']);
    expect(imported.exitCode, imported.stderr).toBe(0);
  }, TIMEOUT);
  afterAll(async () => {
    try {
      const images = await boxImages(runner);
      if (images.length > 0) await podmanAs(runner, ['rmi', ...images]);
    } finally {
      // Rootless podman keeps a process of its own per user (its user namespace's): this run's user is the test's.
      if (runner !== asRoot) await execa('pkill', ['-u', TEST_USER], { reject: false });
    }
  });

  test('a build: output streamed, the build\'s status, the target\'s files the user\'s, provenance; the image made once', async () => {
    const dir = runner.workspace();
    const description = join(dir, 'hello');
    cpSync(join(REPO, 'examples/hello'), description, { recursive: true });
    writeFileSync(join(description, 'build'), `${readFileSync(join(REPO, 'examples/hello/build'), 'utf8')}touch message.txt 2>/dev/null && echo description: written || echo description: read-only\n`);
    runner.own(description);
    const target = join(dir, 'out');
    const first = await runner.run(['--box', BOX, '--container', '--', '--description', description, '--target-dir', target, 'extra']);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stderr).toContain(`making the container image of box ${BOX}`);
    expect(first.stdout).toContain('hello: extra arguments: extra');
    expect(first.stdout).toContain('description: read-only');
    expect(readFileSync(join(target, 'hello/message.txt'), 'utf8')).toBe(readFileSync(join(REPO, 'examples/hello/message.txt'), 'utf8'));
    expect(statSync(join(target, 'hello/message.txt'))).toMatchObject(runner.ids());
    const provenance = JSON.parse(readFileSync(join(target, 'boxbuild-provenance.json'), 'utf8')) as Record<string, unknown>;
    expect(provenance).toMatchObject({ box: BOX, accelerator: 'container', sharing: 'bind', exitCode: 0 });

    const failing = await runner.run(['exec', '--box', BOX, '--container', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    expect(failing).toMatchObject({ exitCode: 7, stdout: 'out' });
    expect(failing.stderr).toContain('err');
    expect(failing.stderr).not.toContain('making the container image');
    expect(await boxImages(runner)).toHaveLength(1);
  });

  test('--timeout and Ctrl-C stop the container: nothing is left of the run', async () => {
    const started = runner.start(['exec', '--box', BOX, '--container', '--timeout', '4s', '--', 'sh', '-c', 'echo started; sleep 60']);
    const timedOut = await started.result;
    expect(timedOut.exitCode, timedOut.stderr).toBe(124);
    expect(timedOut.stdout).toBe('started');
    expect(timedOut.stderr.trim().split('\n').at(-1)).toMatch(/^boxbuild: error: the run did not finish within --timeout 4 s \(it was running the container\)/);
    expect(await containersLeft(runner, started.tmp)).toEqual([]);

    const interrupted = runner.start(['exec', '--box', BOX, '--container', '--', 'sh', '-c', 'echo started; sleep 60']);
    await untilOutput(interrupted.child, 'started');
    process.kill(interrupted.pid, 'SIGINT');
    const result = await interrupted.result;
    expect(result.exitCode, result.stderr).toBe(130);
    expect(await containersLeft(runner, interrupted.tmp)).toEqual([]);
  });
  describe('the network, stdin, and what a container cannot do', () => {
    let server: Server;
    let port: number;
    const asked: string[] = [];
    beforeAll(async () => {
      server = createServer((request, response) => asked.push(request.url!) && response.end('REACHED\n'));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      port = (server.address() as AddressInfo).port;
    });
    afterAll(() => server.close());

    test('filtered (the default) and none reach nothing of the host; full reaches its loopback', async () => {
      const probe = `busybox wget -q -O- http://127.0.0.1:${port}/direct 2>/dev/null || echo direct: refused
env | grep -q '^http_proxy=http://127.0.0.1:3128$' && echo proxy: set || echo proxy: none`;
      const filtered = await runner.run(['exec', '--box', BOX, '--container', '--', 'sh', '-c', probe]);
      expect(filtered.stdout, filtered.stderr).toBe('direct: refused\nproxy: set');
      const throughProxy = await runner.run(['exec', '--box', BOX, '--container', '--', 'sh', '-c', `busybox wget -q -O- http://127.0.0.1:${port}/proxied 2>&1; echo status $?`]);
      expect(throughProxy.stdout).toMatch(/403 Forbidden[\s\S]*status 1/);
      const none = await runner.run(['exec', '--box', BOX, '--container', '--network', 'none', '--', 'sh', '-c', probe]);
      expect(none.stdout).toBe('direct: refused\nproxy: none');
      expect(asked).toEqual([]);
      const full = await runner.run(['exec', '--box', BOX, '--container', '--network', 'full', '--', 'sh', '-c', probe]);
      expect(full.stdout).toBe('REACHED\nproxy: none');
      expect(asked).toEqual(['/direct']);
    });

    test.runIf(runner === asRoot)('stdin reaches the command; -e sets its environment', async () => {
      const result = await runIsolated(['exec', '--box', BOX, '--container', '-e', 'GREETING=a b=c', '--', 'sh', '-c', 'cat; echo "$GREETING"'], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE }, stdin: 'pipe', input: 'piped\ninput\n' });
      expect(result).toMatchObject({ exitCode: 0, stdout: 'piped\ninput\na b=c' });
    });

    test.runIf(runner === asRoot)('what a container cannot do is refused before anything starts (exit 2); no podman is exit 69', async () => {
      const refused: Array<[string[], RegExp]> = [
        [['--accel', 'tcg', '--9p-sharing', '--cold'], /^boxbuild: error: --accel, --sharing, --cold: only for a VM, not with --container$/],
        [['--debug-shell'], /--debug-shell: only for a VM, not with --container/],
        [['--box', 'debian', '--aarch64'], /--container runs the host's architecture \(x86_64\) only: aarch64 builds run in a VM/],
      ];
      for (const [options, message] of refused) {
        const result = await runner.run(['exec', '--box', BOX, '--container', ...options, '--', 'true']);
        expect(result.exitCode).toBe(2);
        expect(result.stderr.trim()).toMatch(message);
      }
      const noRoot = await runner.run(['exec', '--box', 'debian', '--container', '--', 'true']);
      expect(noRoot.exitCode).toBe(2);
      expect(noRoot.stderr).toMatch(/box "debian" has no root file system: run it in a VM/);
      const noPodman = await runIsolated(['exec', '--box', BOX, '--container', '--', 'true'], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE, PATH: tempDir() } });
      expect(noPodman.exitCode).toBe(69);
      expect(noPodman.stderr.trim()).toMatch(/^boxbuild: error: --container needs podman, which is not installed: install podman \(Debian: apt-get install/);
    });
  });

  test('box remove removes the box\'s image too', async () => {
    expect(await boxImages(runner)).toHaveLength(1);
    const removed = await runner.run(['box', 'remove', BOX]);
    expect(removed.stdout).toMatch(/^removed t-ctr-\w+ \(x86_64\), and its container image$/);
    expect(await boxImages(runner)).toEqual([]);
  });
});
