import { describe, expect, test } from 'vitest';
import { COMMAND_LINE_SIZE, checkBoxVariable, kiwiBuildWords, kiwiCmdline, takeKiwiGlobals } from '../../../src/runner/kiwi-cmdline.js';

const words = (args: string[], given = {}) => {
  const { globals, rest } = takeKiwiGlobals(args, given);
  return kiwiBuildWords(globals, rest);
};

describe("kiwi's build arguments", () => {
  test('system build goes in front; global options before it, given before or after --', () => {
    expect(words([])).toEqual(['system', 'build']);
    expect(words(['--type', 'oem'])).toEqual(['--type', 'oem', 'system', 'build']);
    expect(words(['--add-package=vim'], { type: 'oem' })).toEqual(['--type', 'oem', 'system', 'build', '--add-package=vim']);
    expect(words(['--profile=b', '--kiwi-file', 'x.kiwi', '--debug', '--clear-cache'], { profiles: ['a', 'b'] })).toEqual([
      ...['--debug', '--profile', 'a', '--profile', 'b', '--kiwi-file', 'x.kiwi'],
      ...['system', 'build', '--clear-cache'],
    ]);
  });

  test('a global option given twice with different values, or without a value, is refused', () => {
    expect(() => words(['--type', 'iso'], { type: 'oem' })).toThrow(/--type is given twice/);
    expect(words(['--type', 'oem'], { type: 'oem' })).toEqual(['--type', 'oem', 'system', 'build']);
    expect(() => words(['--profile'])).toThrow(/--profile needs a value/);
  });
});

describe('the kernel command line of a KIWI box', () => {
  const base = { arch: 'x86_64' as const, base: 'console=hvc0 root=/dev/vda1 rd.plymouth=0', sharing: '9p' as const };

  test('kiwi="…" right after the registry words, then the optional box variables', () => {
    expect(kiwiCmdline({ ...base, words: ['--type', 'oem', 'system', 'build'] })).toBe(
      'console=hvc0 root=/dev/vda1 rd.plymouth=0 kiwi="--type oem system build" sharing_backend=_9p_',
    );
    expect(kiwiCmdline({ ...base, words: ['system', 'build'], noHalt: true, kiwiVersion: '9.24.1', customMount: '/var/tmp/repos', sharing: 'virtiofs' })).toBe(
      'console=hvc0 root=/dev/vda1 rd.plymouth=0 kiwi="system build" kiwi-no-halt kiwi_version=_9.24.1_ custom_mount=_/var/tmp/repos_ sharing_backend=_virtiofs_',
    );
  });

  test('the build\'s environment (the package cache\'s proxy) travels as name=_value_ words, checked like the others', () => {
    expect(kiwiCmdline({ ...base, words: ['system', 'build'], environment: { http_proxy: 'http://10.0.2.2:3128', https_proxy: 'http://10.0.2.2:3128' } })).toBe(
      'console=hvc0 root=/dev/vda1 rd.plymouth=0 kiwi="system build" sharing_backend=_9p_ http_proxy=_http://10.0.2.2:3128_ https_proxy=_http://10.0.2.2:3128_',
    );
    expect(() => kiwiCmdline({ ...base, words: [], environment: { no_proxy: 'a b' } })).toThrow(/no_proxy "a b"/);
  });

  test('arguments the box would not get as they are are refused', () => {
    for (const word of ['a"b', 'two words', 'tab\there', 'new\nline', '', '--add-repo=_x']) {
      expect(() => kiwiCmdline({ ...base, words: ['system', 'build', word] })).toThrow(/cannot be passed to a KIWI box/);
    }
    expect(kiwiCmdline({ ...base, words: ['system', 'build', '--add-repo=http://x/ü,rpm-md,日本'] })).toContain('日本"');
    expect(() => kiwiCmdline({ ...base, base: 'root="x"', words: [] })).toThrow(/double quote/);
  });

  test('box variables are refused when the box shell would change them; unicode passes', () => {
    expect(checkBoxVariable('--shared-path', '/tmp/ünï/日本')).toBe('/tmp/ünï/日本');
    for (const value of ['/a b', '/a$(x)', "/a'b", '/a;b', '/x=_y']) expect(() => checkBoxVariable('--shared-path', value)).toThrow(/--shared-path/);
  });

  test("a command line longer than the architecture's COMMAND_LINE_SIZE is refused, counted in bytes", () => {
    const fits = (arch: 'x86_64' | 's390x', length: number) => {
      const fixed = Buffer.byteLength(kiwiCmdline({ ...base, arch, words: [] }));
      return () => kiwiCmdline({ ...base, arch, words: ['x'.repeat(length - fixed)] });
    };
    expect(fits('x86_64', COMMAND_LINE_SIZE.x86_64 - 1)()).toHaveLength(2047);
    expect(fits('x86_64', COMMAND_LINE_SIZE.x86_64)).toThrow(/2048 bytes, more than the 2047 the x86_64 kernel takes/);
    expect(fits('s390x', 896)).toThrow(/more than the 895 the s390x kernel takes/);
    expect(() => kiwiCmdline({ ...base, words: ['ü'.repeat(1100)] })).toThrow(/bytes/);
  });
});
