import { describe, expect, test } from 'vitest';
import { describeHost, parseHostSpec } from '../../../../src/driver/remote/host.js';
import { sshArgv } from '../../../../src/driver/remote/ssh.js';

describe('--host [USER@]HOST[:PORT]', () => {
  test.each([
    ['build.example', { host: 'build.example' }],
    ['me@build.example', { user: 'me', host: 'build.example' }],
    ['me@10.0.0.2:2222', { user: 'me', host: '10.0.0.2', port: 2222 }],
    ['[::1]:22', { host: '::1', port: 22 }],
  ])('%s', (spec, parsed) => {
    expect(parseHostSpec(spec)).toEqual({ user: undefined, port: undefined, ...parsed });
    expect(describeHost(parseHostSpec(spec))).toBe(spec);
  });

  test.each(['', '-oProxyCommand=x', 'me@-host', '-me@host', 'host:0', 'host:65536', 'host:port', 'a b', 'me@', 'a@b@c', '::1'])('"%s" is refused (exit 2)', (spec) => {
    expect(() => parseHostSpec(spec)).toThrow(expect.objectContaining({ exitCode: 2 }));
  });

  test("ssh gets the host after --, the user's ssh command from BOXBUILD_SSH_COMMAND, a remote command", () => {
    const argv = sshArgv(parseHostSpec('me@h:2222'), { BOXBUILD_SSH_COMMAND: 'ssh -F conf', BOXBUILD_REMOTE_COMMAND: '/opt/bb/boxbuild' });
    expect(argv.slice(0, 4)).toEqual(['/bin/sh', '-c', 'exec ssh -F conf "$@"', 'ssh']);
    expect(argv.slice(argv.indexOf('--'))).toEqual(['--', 'h', '/opt/bb/boxbuild remote-serve']);
    expect(argv).toEqual(expect.arrayContaining(['-T', 'BatchMode=yes']));
    expect(argv.join(' ')).toContain('-p 2222 -l me --');
  });
});
