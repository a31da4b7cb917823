import { lstatSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, test } from 'vitest';
import { underShareFilter } from '../../../src/sandbox/exec.js';
import { type HostArch, hostArchForSandbox, shareFilter } from '../../../src/sandbox/seccomp.js';
import { tempDir } from '../../helpers/temp.js';

/** Runs a classic BPF seccomp program (the few instructions the filter uses) on one system call. */
function verdict(program: Buffer, call: { arch: number; nr: number; args?: number[] }): string {
  const data = Buffer.alloc(64);
  data.writeInt32LE(call.nr, 0);
  data.writeUInt32LE(call.arch, 4);
  (call.args ?? []).forEach((arg, index) => data.writeBigUInt64LE(BigInt.asUintN(64, BigInt(arg)), 16 + 8 * index));
  let accumulator = 0;
  for (let pc = 0; pc * 8 < program.length; pc++) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    if (code === 0x20) accumulator = data.readUInt32LE(k);
    else if (code === 0x54) accumulator = (accumulator & k) >>> 0;
    else if (code === 0x15) pc += accumulator === k ? jt : jf;
    else if (code === 0x35) pc += accumulator >= k ? jt : jf;
    else if (code === 0x45) pc += (accumulator & k) !== 0 ? jt : jf;
    else if (code === 0x06) return k === 0x7fff0000 ? 'allow' : (k & 0xffff0000) === 0x00050000 ? `errno ${k & 0xffff}` : `ret ${k}`;
    else throw new Error(`unknown instruction ${code}`);
  }
  throw new Error('fell off the end of the program');
}

const EPERM = 'errno 1';

/** System call numbers from the kernel's tables (not the filter's own), and O_DIRECTORY, which differs. */
const ARCHES: Record<HostArch, { audit: number; oDirectory: number; nr: Record<string, number> }> = {
  x86_64: {
    audit: 0xc000003e,
    oDirectory: 0o200000,
    nr: {
      read: 0, open: 2, creat: 85, openat: 257, mkdir: 83, mkdirat: 258, mknod: 133, mknodat: 259,
      chmod: 90, fchmod: 91, fchmodat: 268, fchmodat2: 452, renameat2: 316,
      fchown: 93, fchownat: 260, setresuid: 117, fsetxattr: 190,
    },
  },
  aarch64: {
    audit: 0xc00000b7,
    oDirectory: 0o40000,
    nr: {
      read: 63, openat: 56, mkdirat: 34, mknodat: 33, fchmod: 52, fchmodat: 53, fchmodat2: 452, renameat2: 276,
      fchown: 55, fchownat: 54, setresuid: 147, fsetxattr: 7,
    },
  },
};

describe.each(Object.keys(ARCHES) as HostArch[])('the share filter on %s', (arch) => {
  const program = shareFilter(arch);
  const { audit, nr } = ARCHES[arch];
  const call = (name: string, ...args: number[]) => verdict(program, { arch: audit, nr: nr[name]!, args });

  test('lets ordinary file work through', () => {
    expect(call('read', 0, 0, 4096)).toBe('allow');
    expect(call('openat', -100, 0, 0o2 /* O_RDWR */, 0o4755)).toBe('allow'); // no O_CREAT: the mode is not used
    expect(call('openat', -100, 0, 0o101, 0o755)).toBe('allow');
    expect(call('mkdirat', -100, 0, 0o755)).toBe('allow');
    expect(call('fchmodat', -100, 0, 0o755)).toBe('allow');
    expect(call('mknodat', -100, 0, 0o100644, 0)).toBe('allow');
    expect(call('fchown', 3, 0, 0)).toBe('allow');
    expect(call('fchownat', -100, 0, -1, 0, 0)).toBe('allow');
    expect(call('setresuid', -1, 0, -1)).toBe('allow');
  });

  test('refuses setuid and setgid modes however they are asked for', () => {
    expect(call('fchmodat', -100, 0, 0o4755)).toBe(EPERM);
    expect(call('fchmodat2', -100, 0, 0o2755, 0)).toBe(EPERM);
    expect(call('openat', -100, 0, 0o101, 0o4755)).toBe(EPERM);
    expect(call('openat', -100, 0, 0o20200002 /* O_TMPFILE | O_RDWR */, 0o2700)).toBe(EPERM);
    expect(call('mkdirat', -100, 0, 0o2775)).toBe(EPERM);
    if (nr.chmod) expect(call('chmod', 0, 0o6755)).toBe(EPERM);
    // A regular file made by mknod: the daemon's chmod after it came too late (issue 25).
    expect(call('mknodat', -100, 0, 0o104755, 0)).toBe(EPERM);
    expect(call('mknodat', -100, 0, 0o2755, 0)).toBe(EPERM);
  });

  test('refuses device nodes, FIFOs, sockets and whiteouts', () => {
    for (const type of [0o020000, 0o060000, 0o010000, 0o140000]) expect(call('mknodat', -100, 0, type | 0o666, 0x700)).toBe(EPERM);
    expect(call('renameat2', -100, 0, -100, 0, 4 /* RENAME_WHITEOUT */)).toBe(EPERM);
    expect(call('renameat2', -100, 0, -100, 0, 1 /* RENAME_NOREPLACE */)).toBe('allow');
  });

  test("refuses other users' ids, extended attributes and other ABIs", () => {
    expect(call('fchown', 3, 1234, 0)).toBe(EPERM);
    expect(call('fchownat', -100, 0, 0, 1234, 0)).toBe(EPERM);
    expect(call('setresuid', -1, 1234, -1)).toBe(EPERM);
    expect(call('fsetxattr', 3, 0, 0, 20, 0)).toBe(EPERM);
    expect(verdict(program, { arch: 0x40000003, nr: 15 /* i386 chmod */, args: [0, 0o4755] })).toBe(EPERM);
    if (arch === 'x86_64') expect(verdict(program, { arch: audit, nr: 0x40000000 | 268, args: [-100, 0, 0o4755] })).toBe(EPERM);
  });
});

/*
 * The real filter, loaded on this host as the sharing daemons load it: every call that creates a
 * file or changes a mode, with every set-id combination, must fail before it reaches the file system.
 */
describe('the share filter loaded on this host', () => {
  const arch = hostArchForSandbox();
  const { nr, oDirectory } = ARCHES[arch];
  const O_WRONLY = 0o1;
  const O_CREAT = 0o100;
  const O_EXCL = 0o200;
  const O_TMPFILE = 0o20000000 | oDirectory;
  const S_IFREG = 0o100000;
  const AT_FDCWD = -100;
  /** Set in an argument the kernel ignores: a rule that reads the wrong argument refuses the plain calls too. */
  const JUNK = 0o6000;

  /**
   * Runs the calls under the filter in `dir`, each "LABEL NAME TOKEN...", a token being n:NUMBER,
   * p:PATH (below dir), f:PATH (an open descriptor of it) or d: (dir itself); prints "LABEL ERRNO".
   */
  const SCRIPT = `use strict;
my ($dir, @calls) = @ARGV;
my @open;
sub arg {
  my ($kind, $value) = split /:/, $_[0], 2;
  return $value + 0 if $kind eq 'n';
  return "$dir/$value" if $kind eq 'p';
  return $dir if $kind eq 'd';
  open(my $fh, '<', "$dir/$value") or die "$value: $!";
  push @open, $fh;
  return fileno($fh);
}
for my $call (@calls) {
  my ($label, $nr, @tokens) = split / /, $call;
  my @args = map { arg($_) } @tokens;
  print "$label ", (syscall($nr + 0, @args) == -1 ? $! + 0 : 0), "\\n";
}
`;

  type Token = number | { path: string } | { fd: string } | 'dir';
  const token = (arg: Token) => (arg === 'dir' ? 'd:' : typeof arg === 'number' ? `n:${arg}` : 'path' in arg ? `p:${arg.path}` : `f:${arg.fd}`);

  /** Each call that takes a mode, made with `mode` on a new name, or on the existing file `NAME.existing`. */
  const calls: Array<[string, (name: string, mode: number) => [string, ...Token[]]]> = [
    ['open-creat', (name, mode) => ['open', { path: name }, O_CREAT | O_EXCL | O_WRONLY, mode]],
    ['open-tmpfile', (_, mode) => ['open', 'dir', O_TMPFILE | O_WRONLY, mode]],
    ['openat-creat', (name, mode) => ['openat', AT_FDCWD, { path: name }, O_CREAT | O_EXCL | O_WRONLY, mode]],
    ['openat-tmpfile', (_, mode) => ['openat', AT_FDCWD, 'dir', O_TMPFILE | O_WRONLY, mode]],
    ['creat', (name, mode) => ['creat', { path: name }, mode, JUNK]],
    ['mkdir', (name, mode) => ['mkdir', { path: name }, mode, JUNK]],
    ['mkdirat', (name, mode) => ['mkdirat', AT_FDCWD, { path: name }, mode, JUNK]],
    ['mknod-reg', (name, mode) => ['mknod', { path: name }, S_IFREG | mode, JUNK]], // a regular file's dev is unused
    ['mknod-0', (name, mode) => ['mknod', { path: name }, mode, JUNK]],
    ['mknodat-reg', (name, mode) => ['mknodat', AT_FDCWD, { path: name }, S_IFREG | mode, JUNK]],
    ['mknodat-0', (name, mode) => ['mknodat', AT_FDCWD, { path: name }, mode, JUNK]],
    ['chmod', (name, mode) => ['chmod', { path: `${name}.existing` }, mode, JUNK]],
    ['fchmod', (name, mode) => ['fchmod', { fd: `${name}.existing` }, mode, JUNK]],
    ['fchmodat', (name, mode) => ['fchmodat', AT_FDCWD, { path: `${name}.existing` }, mode, JUNK]],
    ['fchmodat2', (name, mode) => ['fchmodat2', AT_FDCWD, { path: `${name}.existing` }, mode, 0]],
  ];
  const PLAIN = [0o755, 0o1755];
  const SET_ID = [0o4755, 0o2755, 0o6755, 0o5755, 0o3755, 0o7755];

  /** Runs the calls under the filter: errno by label (0: it worked). */
  async function run(dir: string, list: Array<[string, string, ...Token[]]>): Promise<Record<string, number>> {
    const specs = list.map(([label, name, ...args]) => [label, nr[name]!, ...args.map(token)].join(' '));
    const [file, ...args] = underShareFilter(['perl', '-e', SCRIPT, dir, ...specs]);
    const { stdout } = await execa(file!, args);
    return Object.fromEntries(stdout.split('\n').map((line) => line.split(' ')).map(([label, errno]) => [label, Number(errno)]));
  }

  /** What below `dir` is neither a plain regular file nor a plain directory. */
  function unusual(dir: string): string[] {
    return readdirSync(dir, { recursive: true, encoding: 'utf8' }).flatMap((name) => {
      const { mode } = lstatSync(join(dir, name));
      const plain = (mode & 0o6000) === 0 && ((mode & 0o170000) === S_IFREG || (mode & 0o170000) === 0o040000);
      return plain ? [] : [`${name}: ${mode.toString(8)}`];
    });
  }

  test('refuses every set-id mode, by every call that takes a mode, and lets the same calls through without', async () => {
    const dir = tempDir('bb-filter-');
    const list: Array<[string, string, ...Token[]]> = [];
    const expected: Record<string, number> = {};
    for (const [label, make] of calls.filter(([, make]) => nr[make('x', 0)[0]] !== undefined)) {
      for (const mode of [...PLAIN, ...SET_ID]) {
        const name = `${label}-${mode.toString(8)}`;
        writeFileSync(join(dir, `${name}.existing`), '');
        list.push([name, ...make(name, mode)]);
        expected[name] = SET_ID.includes(mode) ? 1 /* EPERM */ : 0;
      }
    }
    // Without O_CREAT or O_TMPFILE the mode is unused: opening an existing file is not refused.
    writeFileSync(join(dir, 'existing'), '');
    list.push(['openat-existing', 'openat', AT_FDCWD, { path: 'existing' }, O_WRONLY, 0o6755]);
    expected['openat-existing'] = 0;

    expect(await run(dir, list)).toEqual(expected);
    expect(unusual(dir)).toEqual([]);
  });

  test('refuses whiteouts: renameat2 with RENAME_WHITEOUT would leave a character device behind', async () => {
    const dir = tempDir('bb-filter-');
    for (const name of ['whiteout', 'noreplace']) writeFileSync(join(dir, name), '');
    const results = await run(dir, [
      ['whiteout', 'renameat2', AT_FDCWD, { path: 'whiteout' }, AT_FDCWD, { path: 'whiteout.renamed' }, 4 /* RENAME_WHITEOUT */],
      ['noreplace', 'renameat2', AT_FDCWD, { path: 'noreplace' }, AT_FDCWD, { path: 'noreplace.renamed' }, 1 /* RENAME_NOREPLACE */],
    ]);
    expect(results).toEqual({ whiteout: 1, noreplace: 0 });
    expect(unusual(dir)).toEqual([]);
  });
});
