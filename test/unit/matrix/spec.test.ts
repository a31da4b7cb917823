import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { usageError } from '../../../src/errors.js';
import { MAX_BUILDS, loadMatrix, parseMatrix } from '../../../src/matrix/spec.js';
import { tempDir } from '../../helpers/temp.js';

let dir: string;
let file: string;

beforeAll(() => {
  dir = tempDir();
  for (const name of ['hello', 'other']) mkdirSync(join(dir, 'examples', name), { recursive: true });
  writeFileSync(join(dir, 'not-a-dir'), '');
  file = join(dir, 'nightly.yaml');
});

const parse = (text: string, options = {}) => parseMatrix(text, file, options);
/** The one-line usage error parsing `text` throws. */
const refusal = (text: string, options = {}) => {
  try {
    parse(text, options);
  } catch (error) {
    expect(error).toMatchObject({ exitCode: 2 });
    return (error as Error).message.replace(`${file}: `, 'FILE: ');
  }
  throw new Error('not refused');
};

describe('matrix file', () => {
  test('lists expand into their cross product; defaults apply, tags add up; paths relative to the file', () => {
    const builds = parse(`
defaults: { timeout: 1h, retries: 1, tags: [nightly] }
builds:
  - box: [debian, debian-system]
    arch: [x86_64, arm64]
    description: examples/hello
    args: [--type, "a b"]
    target: out/{box}-{arch}
    timeout: 20m
    tags: [smoke]
  - box: debian
    arch: x86_64
    description: [./examples/other/, examples/hello]
    retries: 0
`);
    expect(builds.map((build) => build.name)).toEqual([
      'debian x86_64 examples/hello --type a b',
      'debian aarch64 examples/hello --type a b',
      'debian-system x86_64 examples/hello --type a b',
      'debian-system aarch64 examples/hello --type a b',
      'debian x86_64 examples/other',
      'debian x86_64 examples/hello',
    ]);
    expect(builds[1]).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{12}$/),
      name: 'debian aarch64 examples/hello --type a b',
      label: 'examples/hello --type a b',
      box: 'debian',
      arch: 'aarch64',
      description: join(dir, 'examples/hello'),
      args: ['--type', 'a b'],
      target: join(dir, 'out/debian-aarch64'),
      timeoutSeconds: 1200,
      retries: 1,
      tags: ['nightly', 'smoke'],
    });
    expect(builds[4]).toMatchObject({ timeoutSeconds: 3600, retries: 0, tags: ['nightly'], args: [] });
    expect(builds[4]!.target).toBeUndefined();
    expect(new Set(builds.map((build) => build.id)).size).toBe(6);
  });

  test('ids are stable: the same build has the same id in another file, wherever the checkout lies; JSON works too', () => {
    const [yaml] = parse('builds: [{box: debian, arch: x86_64, description: examples/hello}]');
    const [json] = parseMatrix(JSON.stringify({ builds: [{ box: 'debian', arch: 'amd64', description: './examples/hello', timeout: 90 }] }), join(dir, 'm.json'));
    expect(json).toMatchObject({ id: yaml!.id, arch: 'x86_64', timeoutSeconds: 90 });
    const moved = tempDir();
    mkdirSync(join(moved, 'examples/hello'), { recursive: true });
    expect(parseMatrix('builds: [{box: debian, arch: x86_64, description: examples/hello}]', join(moved, 'm.yaml'))[0]!.id).toBe(yaml!.id);
    expect(parse('builds: [{box: debian, arch: x86_64, description: examples/hello, args: [x]}]')[0]!.id).not.toBe(yaml!.id);
  });

  test.each([
    ['[1, 2]', 'FILE: must be a map with "builds" (and "defaults"), not a list'],
    ['builds: []', 'FILE: builds: must be a non-empty list of builds, not a list'],
    ['build: []', 'FILE: build: unknown field (a matrix file has "defaults" and "builds")'],
    ['builds: [{box: debian}]', 'FILE: builds[0].description: missing (the description directory)'],
    ['builds: [{description: examples/hello}]', 'FILE: builds[0].box: missing (the box to build in)'],
    ['builds: [{box: debian, description: examples/hello, arch: sparc}]', 'FILE: builds[0].arch: unknown architecture "sparc" (known: x86_64, aarch64, s390x, ppc64le, riscv64)'],
    ['builds: [{box: debian, description: examples/hello, args: [-j, 4]}]', 'FILE: builds[0].args[1]: must be a string, not the number 4 (quote it to make it a string)'],
    ['builds: [{box: debian, description: examples/hello, args: --x}]', 'FILE: builds[0].args: must be a list of strings, not string'],
    ['builds: [{box: [debian, {a: 1}], description: examples/hello}]', 'FILE: builds[0].box[1]: must be a string, not a map'],
    ['builds: [{box: Debian, description: examples/hello}]', 'FILE: builds[0].box: "Debian" is no box name (see "boxbuild box list")'],
    ['builds: [{box: debian, description: []}]', 'FILE: builds[0].description: must not be an empty list'],
    ['builds: [{box: debian, description: missing}]', `FILE: builds[0].description: ${'DIR'}/missing does not exist`],
    ['builds: [{box: debian, description: not-a-dir}]', `FILE: builds[0].description: ${'DIR'}/not-a-dir is no directory`],
    ['builds: [{box: debian, description: examples/hello, timeout: soon}]', 'FILE: builds[0].timeout: "soon" is not a duration (examples: 90, 90s, 10m, 2h)'],
    ['builds: [{box: debian, description: examples/hello, retries: -1}]', 'FILE: builds[0].retries: must be a whole number from 0 to 10, not -1'],
    ['builds: [{box: debian, description: examples/hello, retries: "2"}]', 'FILE: builds[0].retries: must be a whole number from 0 to 10, not "2"'],
    ['builds: [{box: debian, description: examples/hello, tags: [true]}]', 'FILE: builds[0].tags[0]: must be a string, not true (quote it to make it a string)'],
    ['builds: [{box: debian, description: examples/hello, colour: red}]', 'FILE: builds[0].colour: unknown field (the fields are box, arch, description, args, target, timeout, retries, tags)'],
    ['builds: [{box: debian, description: examples/hello, __proto__: {}}]', 'FILE: builds[0].__proto__: unknown field (the fields are box, arch, description, args, target, timeout, retries, tags)'],
    ['builds: [{box: debian, description: examples/hello, target: "out/{name}"}]', 'FILE: builds[0].target: unknown placeholder {name} (known: {box}, {arch}, {id})'],
    ['builds: [{box: debian, description: examples/hello, args: [!!binary aGk=]}]', 'FILE: builds[0].args[0]: must be a string, not binary data'],
    ['builds: [{box: debian, description: examples/hello, args: ["a\\0b"]}]', 'FILE: builds[0].args[0]: holds a NUL character or a lone UTF-16 surrogate'],
    ['builds: [{box: debian, description: examples/hello, args: ["\\uD800"]}]', 'FILE: builds[0].args[0]: holds a NUL character or a lone UTF-16 surrogate'],
    ['defaults: {timeout: 0}\nbuilds: [{box: debian, description: examples/hello}]', 'FILE: defaults.timeout: must be greater than zero'],
    ['builds: [{box: debian, description: examples/hello}]\nbuilds: []', 'FILE: Map keys must be unique at line 2, column 1'],
    ['builds: [{box: debian', 'FILE: Flow map in block collection must be sufficiently indented and end with a } at line 1, column 22'],
  ])('%s is refused: %s', (text, message) => {
    expect(refusal(text)).toBe(message.replace('DIR', dir));
  });

  test('a build repeated after expansion, two builds sharing a target', () => {
    expect(refusal('builds: [{box: debian, arch: [x86_64, amd64], description: examples/hello}]')).toBe('FILE: builds[0]: repeats builds[0]: debian x86_64 examples/hello');
    expect(refusal('builds: [{box: debian, arch: x86_64, description: examples/hello}, {box: debian, arch: x86_64, description: ./examples/hello/}]')).toBe(
      'FILE: builds[1]: repeats builds[0]: debian x86_64 examples/hello',
    );
    expect(refusal('builds: [{box: debian, arch: [x86_64, aarch64], description: examples/hello, target: "out/{box}"}]')).toBe(
      `FILE: builds[0].target: ${dir}/out/debian is also the target of debian x86_64 examples/hello; put {box}, {arch} or {id} in it`,
    );
  });

  test("boxes the registry lacks are refused with the registry's words", () => {
    const checkBox = (box: string, arch: string) => {
      if (box !== 'debian') throw usageError(`unknown box "${box}"`);
      if (arch !== 'x86_64') throw usageError(`box "${box}" has no ${arch} variant`);
    };
    expect(refusal('builds: [{box: [debian, nope], arch: x86_64, description: examples/hello}]', { checkBox })).toBe('FILE: builds[0]: unknown box "nope"');
    expect(refusal('builds: [{box: debian, arch: [x86_64, riscv64], description: examples/hello}]', { checkBox })).toBe('FILE: builds[0]: box "debian" has no riscv64 variant');
  });

  test('hostile files: a cross product past the cap, too many builds, an alias bomb, a huge file', () => {
    const arches = '[x86_64, aarch64, s390x, ppc64le, riscv64]';
    const boxes = `[${Array.from({ length: 50 }, (_, i) => `b${i}`).join(', ')}]`;
    const descriptions = `[${Array.from({ length: 50 }, () => 'examples/hello').join(', ')}]`;
    expect(refusal(`builds: [{box: ${boxes}, arch: ${arches}, description: ${descriptions}}]`)).toBe(`FILE: builds[0]: expands to 12500 builds, more than ${MAX_BUILDS} in all`);
    expect(refusal(`builds: [${Array.from({ length: MAX_BUILDS + 1 }, () => '{}').join(',')}]`)).toBe(`FILE: builds: ${MAX_BUILDS + 1} builds; at most ${MAX_BUILDS}`);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefghi'.split('').map((name, i) => `${name}: &${name} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(', ')}]`), 'builds: *i'].join('\n');
    expect(refusal(bomb)).toBe('FILE: Excessive alias count indicates a resource exhaustion attack');
    const huge = join(tempDir(), 'huge.yaml');
    writeFileSync(huge, `# ${'x'.repeat(5 * 2 ** 20)}\n`);
    expect(() => loadMatrix(huge)).toThrow(/huge\.yaml: 5242883 bytes; at most 4194304$/);
    expect(() => loadMatrix(join(dir, 'missing.yaml'))).toThrow(/^cannot read the matrix file .*missing\.yaml: ENOENT$/);
  });

  test('a deeply nested file is refused, not a crash', () => {
    expect(refusal(`builds: ${'['.repeat(100_000)}`)).toMatch(/^FILE: /);
  });
});
