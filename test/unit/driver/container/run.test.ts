import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { containerNetwork } from '../../../../src/driver/container/network.js';
import { type ContainerPlan, createArguments, mountOption } from '../../../../src/driver/container/run.js';
import { DEFAULT_NETWORK } from '../../../../src/network/mode.js';

const plan = (changes: Partial<ContainerPlan> = {}): ContainerPlan => ({
  image: 'localhost/boxbuild/b:x86_64-0123',
  argv: ['/usr/lib/boxbuild/build', '--description', '/description'],
  cwd: '/target',
  mounts: [
    { tag: 'description', hostPath: '/home/u/desc', guestPath: '/description', readOnly: true },
    { tag: 'target', hostPath: '/home/u/out', guestPath: '/target', readOnly: false },
  ],
  environment: {},
  network: containerNetwork({ mode: 'none', allow: [] }, undefined),
  privileges: 'build',
  memoryMiB: 2048,
  cpus: 2,
  stdout: new PassThrough(),
  stderr: new PassThrough(),
  runDir: '/tmp/boxbuild-x',
  ...changes,
});
const podman = { limits: ['--ulimit', 'nofile=20000:20000'], rootless: false };

describe("a container's command line", () => {
  test('a build: its mounts, limits, no new privileges, the environment file, the run it belongs to; the command last', () => {
    const args = createArguments(podman, plan(), 'boxbuild-1', '/tmp/boxbuild-x/container.env');
    expect(args.slice(0, 3)).toEqual(['create', '--name', 'boxbuild-1']);
    expect(args.join(' ')).toContain('--label org.boxbuild.run=/tmp/boxbuild-x --pull never');
    expect(args.join(' ')).toContain('--network none --ulimit nofile=20000:20000 --memory 2048m --cpus 2 --security-opt no-new-privileges');
    expect(args.join(' ')).toContain('--mount type=bind,source=/home/u/desc,destination=/description,ro=true --mount type=bind,source=/home/u/out,destination=/target --env-file /tmp/boxbuild-x/container.env --workdir /target');
    expect(args.slice(-4)).toEqual(['localhost/boxbuild/b:x86_64-0123', '/usr/lib/boxbuild/build', '--description', '/description']);
    expect(args).not.toContain('--interactive');
    expect(args).not.toContain('--cap-add');
  });

  test("kiwi's privileges are KIWI's container mode's; rootless podman sets no cgroup limits; stdin and a terminal", () => {
    const kiwi = createArguments({ ...podman, rootless: true }, plan({ privileges: 'kiwi', stdin: new PassThrough(), tty: true }), 'n', 'e');
    expect(kiwi.join(' ')).toContain('--cap-add SYS_ADMIN,MKNOD,AUDIT_WRITE,AUDIT_CONTROL --security-opt label=disable --mount type=bind,source=/dev,destination=/dev');
    expect(kiwi).not.toContain('--memory');
    expect(kiwi.join(' ')).toContain('--interactive --tty');
  });

  test('a mount whose path holds a comma or a quote is quoted as podman reads its CSV', () => {
    expect(mountOption({ tag: 't', hostPath: '/a,b/"c"', guestPath: '/d', readOnly: true })).toEqual(['--mount', 'type=bind,"source=/a,b/""c""",destination=/d,ro=true']);
  });

  test('the network: none alone; filtered with the relay at 127.0.0.1:3128; full on the host\'s, with its proxy settings as they are', () => {
    expect(containerNetwork({ mode: 'none', allow: [] }, undefined)).toEqual({ options: ['--network', 'none'], environment: {} });
    const filtered = containerNetwork(DEFAULT_NETWORK, '/run/egress.sock');
    expect(filtered).toMatchObject({ options: ['--network', 'none'], egressSocket: '/run/egress.sock' });
    expect(filtered.environment).toEqual({ http_proxy: 'http://127.0.0.1:3128', HTTP_PROXY: 'http://127.0.0.1:3128', https_proxy: 'http://127.0.0.1:3128', HTTPS_PROXY: 'http://127.0.0.1:3128' });
    expect(containerNetwork({ mode: 'full', allow: [] }, undefined, { http_proxy: 'http://localhost:3128', no_proxy: 'x' })).toEqual({ options: ['--network', 'host'], environment: { http_proxy: 'http://localhost:3128', no_proxy: 'x' } });
  });
});
