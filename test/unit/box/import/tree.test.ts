import { describe, expect, test } from 'vitest';
import { type EntryHeader, applyEntry } from '../../../../src/box/import/layer.js';
import { MergedTree, Refusal, elfArch, pathParts } from '../../../../src/box/import/tree.js';
import { elfHeader, hostElf } from './fixtures.js';

/*
 * The merged tree of an image's layers, entry by entry (no tar): what it refuses, what each
 * layer's whiteouts are, how it resolves paths as the guest will.
 */

type Spec = Partial<EntryHeader> & { path: string; mode?: number };

/** Applies layers of entries (default: regular files) to a fresh tree; returns it and each layer's changes. */
function layers(...specs: Spec[][]) {
  const tree = new MergedTree();
  const changes = specs.map((entries, at) => {
    tree.beginLayer(at);
    entries.forEach((entry, index) => applyEntry(tree, { type: 'File', size: 0, ...entry }, index));
    return tree.endLayer();
  });
  return { tree, changes };
}

const refused = (run: () => unknown, pattern: RegExp) => {
  expect(run).toThrow(Refusal);
  expect(run).toThrow(pattern);
};

describe('paths', () => {
  test('a leading "/" and "./" are stripped, empty and "." components dropped', () => {
    expect(pathParts('/etc//./passwd', 'entry')).toEqual(['etc', 'passwd']);
    expect(pathParts('./', 'entry')).toEqual([]);
    expect(pathParts('./usr/bin/', 'entry')).toEqual(['usr', 'bin']);
  });

  test('a ".." component, a NUL byte or an overlong name is refused', () => {
    refused(() => pathParts('../etc/passwd', 'entry'), /entry "..\/etc\/passwd" has a ".." component/);
    refused(() => pathParts('usr/../../x', 'entry'), /".." component/);
    refused(() => pathParts('etc\0/x', 'entry'), /NUL byte/);
    refused(() => pathParts(`a/${'n'.repeat(256)}`, 'entry'), /longer than 255 bytes/);
    refused(() => pathParts('a/'.repeat(2049), 'entry'), /longer than 4096 bytes/);
  });
});

describe('entries through symlinks', () => {
  test('an entry below a symlink of an earlier layer is refused', () => {
    refused(() => layers([{ path: 'etc', type: 'SymbolicLink', linkpath: '/host' }], [{ path: 'etc/passwd' }]), /entry "etc\/passwd" goes through the symlink "etc" \(-> \/host\)/);
  });

  test('an entry below a symlink of the same layer is refused, a relative one too', () => {
    refused(() => layers([{ path: 'a', type: 'SymbolicLink', linkpath: '../../..' }, { path: 'a/b/c' }]), /goes through the symlink "a"/);
  });

  test('an entry below a regular file is refused', () => {
    refused(() => layers([{ path: 'a' }, { path: 'a/b' }]), /"a", which is not a directory/);
  });

  test('a directory over a symlink of an earlier layer replaces it: the symlink is among the layer\'s whiteouts', () => {
    const { tree, changes } = layers([{ path: 'etc', type: 'SymbolicLink', linkpath: '/host' }], [{ path: 'etc', type: 'Directory' }, { path: 'etc/passwd' }]);
    expect(changes[1]!.whiteouts).toEqual(['etc']);
    expect(tree.lookup(['etc', 'passwd'])?.kind).toBe('file');
  });

  test('a file over a directory of an earlier layer replaces it and what is in it', () => {
    const { tree, changes } = layers([{ path: 'd', type: 'Directory' }, { path: 'd/x' }], [{ path: 'd', type: 'SymbolicLink', linkpath: '/' }]);
    expect(changes[1]!.whiteouts).toEqual(['d']);
    expect(tree.totals().files).toBe(1);
  });

  test('a directory and a symlink at one path of one layer are refused, in either order', () => {
    refused(() => layers([{ path: 'etc', type: 'SymbolicLink', linkpath: '/host' }, { path: 'etc', type: 'Directory' }]), /"etc" is both a symlink and a directory in one layer/);
    refused(() => layers([{ path: 'etc/x' }, { path: 'etc', type: 'SymbolicLink', linkpath: '/host' }]), /both a directory and a symlink/);
  });

  test('a file over a file or a symlink is replaced, as tar unlinks it first', () => {
    const { tree, changes } = layers([{ path: 'a', type: 'SymbolicLink', linkpath: '/x' }], [{ path: 'a', size: 3 }]);
    expect(changes[1]!.whiteouts).toEqual([]);
    expect(tree.lookup(['a'])).toMatchObject({ kind: 'file', size: 3 });
  });

  test('the root entry must be a directory', () => {
    refused(() => layers([{ path: './', type: 'SymbolicLink', linkpath: '/' }]), /root entry/);
  });
});

describe('hard links', () => {
  test('a hard link to an entry of the tree is that entry again', () => {
    const { tree } = layers([{ path: 'usr/bin/a', size: 7 }], [{ path: 'bin/b', type: 'Link', linkpath: './usr/bin/a' }]);
    expect(tree.lookup(['bin', 'b'])).toMatchObject({ kind: 'file', size: 7 });
  });

  test('a hard link to a path outside the tree, absolute, with "..", to a directory or to nothing yet is refused', () => {
    refused(() => layers([{ path: 'shadow', type: 'Link', linkpath: '../../etc/shadow' }]), /hard link "shadow" -> target "..\/..\/etc\/shadow" has a ".." component/);
    refused(() => layers([{ path: 'shadow', type: 'Link', linkpath: '/etc/shadow' }]), /hard link "shadow" has an absolute target/);
    refused(() => layers([{ path: 'shadow', type: 'Link', linkpath: 'etc/shadow' }]), /links to "etc\/shadow", which is not in the image before it/);
    refused(() => layers([{ path: 'd', type: 'Directory' }, { path: 'l', type: 'Link', linkpath: 'd' }]), /links to the directory "d"/);
  });

  test('a hard link through a symlink of the tree is refused', () => {
    refused(() => layers([{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }], [{ path: 'x', type: 'Link', linkpath: 'etc/shadow' }]), /not in the image before it/);
  });
});

describe('whiteouts', () => {
  test('.wh.NAME deletes NAME of the layers below; .wh..wh..opq empties its directory of them', () => {
    const { tree, changes } = layers(
      [{ path: 'etc/passwd' }, { path: 'etc/group' }, { path: 'var/cache/a' }, { path: 'var/cache/d/e' }],
      [{ path: 'var/cache/b' }, { path: 'etc/.wh.passwd' }, { path: 'var/cache/.wh..wh..opq' }],
    );
    expect(changes[1]).toEqual({ whiteouts: ['etc/passwd'], opaque: ['var/cache'], markers: ['etc/.wh.passwd', 'var/cache/.wh..wh..opq'] });
    expect(tree.lookup(['etc', 'passwd'])).toBeUndefined();
    expect(tree.lookup(['etc', 'group'])).toBeDefined();
    // What the layer itself put there stays, written before its opaque marker or not.
    expect([...tree.lookup(['var', 'cache'])!.children!.keys()]).toEqual(['b']);
    expect(tree.totals().files).toBe(5); // etc, etc/group, var, var/cache, var/cache/b: no marker
  });

  test('a whiteout in the first layer is harmless', () => {
    const { tree, changes } = layers([{ path: '.wh.nothing' }, { path: 'a' }]);
    expect(changes[0]!.whiteouts).toEqual(['nothing']);
    expect(tree.totals().files).toBe(1);
  });

  test('a whiteout that names "..", "." or nothing, or an unknown .wh..wh. kind, is refused', () => {
    refused(() => layers([{ path: 'a' }], [{ path: 'etc/.wh...' }]), /whiteout "etc\/.wh..." names ".."/);
    refused(() => layers([{ path: 'etc/.wh..' }]), /names "\."/);
    refused(() => layers([{ path: '.wh.' }]), /names ""/);
    refused(() => layers([{ path: 'a/.wh..wh.plnk' }]), /names ".wh.plnk"/);
  });

  test('a whiteout through a symlink of an earlier layer is refused', () => {
    refused(() => layers([{ path: 'etc', type: 'SymbolicLink', linkpath: '/host/etc' }], [{ path: 'etc/.wh.passwd' }]), /"etc\/.wh.passwd" goes through the symlink "etc"/);
    refused(() => layers([{ path: 'etc', type: 'SymbolicLink', linkpath: '/host/etc' }], [{ path: 'etc/.wh..wh..opq' }]), /goes through the symlink/);
  });

  test('a marker that is a directory, or an entry inside a marker, is refused', () => {
    refused(() => layers([{ path: 'a/.wh.b', type: 'Directory' }]), /whiteout marker "a\/.wh.b" is a directory/);
    refused(() => layers([{ path: '.wh.b/c' }]), /entry ".wh.b\/c" lies inside a whiteout marker/);
  });

  test('what lies below another path the layer deletes is left out of its whiteouts', () => {
    const { changes } = layers([{ path: 'etc', type: 'SymbolicLink', linkpath: '/x' }], [{ path: 'etc', type: 'Directory' }, { path: 'etc/.wh.passwd' }, { path: 'etc/.wh..wh..opq' }]);
    expect(changes[1]).toMatchObject({ whiteouts: ['etc'], opaque: [] });
  });
});

describe('the tree as the guest resolves it', () => {
  const { tree } = layers(
    [
      { path: 'usr/bin/dash', size: 10 },
      { path: 'usr/bin/sh', type: 'SymbolicLink', linkpath: 'dash' },
      { path: 'bin', type: 'SymbolicLink', linkpath: 'usr/bin' },
      { path: 'sbin', type: 'SymbolicLink', linkpath: '/../../../usr/./bin/' },
      { path: 'loop', type: 'SymbolicLink', linkpath: 'loop' },
    ],
    [{ path: 'dev/null', type: 'CharacterDevice' }, { path: 'run/fifo', type: 'FIFO' }, { path: 'usr/bin/su', mode: 0o4755, size: 5 }],
  );

  test('symlinks are followed, relative and absolute, ".." staying at the root', () => {
    expect(tree.resolve('bin/sh')).toBe(tree.lookup(['usr', 'bin', 'dash']));
    expect(tree.resolve('/sbin/sh')).toBe(tree.lookup(['usr', 'bin', 'dash']));
    expect(tree.resolve('bin/../bin/sh')?.size).toBe(10);
  });

  test('a symlink loop or a missing path resolves to nothing', () => {
    expect(tree.resolve('loop')).toBeUndefined();
    expect(tree.resolve('bin/nothing')).toBeUndefined();
    expect(tree.resolve('usr/bin/dash/x')).toBeUndefined();
  });

  test('devices, fifos and set-id files are entries like any other; totals count the regular files', () => {
    expect(tree.totals()).toEqual({ bytes: 15, files: 12 });
  });
});

describe('ELF headers', () => {
  test('x86_64 and aarch64 are told; other machines are described', () => {
    expect(elfArch(hostElf().subarray(0, 64))).toBe('x86_64');
    expect(elfArch(elfHeader(0xb7))).toBe('aarch64');
    expect(elfArch(elfHeader(0x28))).toBe('64-bit little-endian ELF machine 0x28');
    expect(elfArch(Buffer.from('#!/bin/sh\necho not an ELF program\n'))).toBeUndefined();
  });
});
