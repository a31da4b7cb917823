import { describe, expect, test } from 'vitest';
import { findBox, loadRegistry, parseRegistry } from '../../src/box/registry.js';

const doc = (box: object) => JSON.stringify({ boxes: { mybox: { buildProgram: '/b', arches: { x86_64: {} }, ...box } } });

describe('registry', () => {
  test('the bundled registry has the debian box', () => {
    const { box } = findBox(loadRegistry(), 'debian', 'x86_64');
    expect(box.make).toBe('debian');
    expect(box.buildProgram).toBe('/usr/lib/boxbuild/build');
  });
  test('defaults', () => {
    const [box] = parseRegistry('f.json', doc({}));
    expect(box).toMatchObject({ name: 'mybox', protocol: 'boxbuild', memoryMiB: 1024, cpus: 1, console: 'ttyS0', cmdline: '' });
  });
  test('errors name the file, the box and the field', () => {
    expect(() => parseRegistry('f.json', doc({ cpus: 'two' }))).toThrow('f.json: box "mybox": field "cpus" must be a positive whole number');
    expect(() => parseRegistry('f.json', doc({ memmory: 5 }))).toThrow('f.json: box "mybox": unknown field "memmory"');
    expect(() => parseRegistry('f.json', doc({ arches: { sparc: {} } }))).toThrow('unknown architecture "sparc"');
    expect(() => parseRegistry('f.json', doc({ console: 'tty9' }))).toThrow('field "console" must be one of ttyS0, hvc0');
    expect(() => parseRegistry('f.json', '{')).toThrow('f.json: not valid JSON');
    expect(() => parseRegistry('f.json', '{"boxes": 3}')).toThrow('expected an object with a "boxes" object');
  });
  test('unknown box or architecture', () => {
    expect(() => findBox(loadRegistry(), 'nope', 'x86_64')).toThrow('unknown box "nope"');
    expect(() => findBox(loadRegistry(), 'debian', 'riscv64')).toThrow('has no riscv64 variant');
  });
});
