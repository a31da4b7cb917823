import { describe, expect, test } from 'vitest';
import { type HostArch, shareFilter } from '../../src/sandbox/seccomp.js';

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

const ARCHES: Record<HostArch, { audit: number; nr: Record<string, number> }> = {
  x86_64: { audit: 0xc000003e, nr: { read: 0, openat: 257, open: 2, mkdirat: 258, mknodat: 259, fchmodat: 268, fchmodat2: 452, fchown: 93, fchownat: 260, setresuid: 117, fsetxattr: 190, chmod: 90 } },
  aarch64: { audit: 0xc00000b7, nr: { read: 63, openat: 56, mkdirat: 34, mknodat: 33, fchmodat: 53, fchmodat2: 452, fchown: 55, fchownat: 54, setresuid: 147, fsetxattr: 7 } },
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
  });

  test('refuses device nodes, FIFOs and sockets', () => {
    for (const type of [0o020000, 0o060000, 0o010000, 0o140000]) expect(call('mknodat', -100, 0, type | 0o666, 0x700)).toBe(EPERM);
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
