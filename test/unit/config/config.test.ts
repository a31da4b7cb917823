import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { describeSkipped, findConfigFiles, loadConfig } from '../../../src/config/config.js';
import { tempDir } from '../../helpers/temp.js';

describe('config files', () => {
  test.each(['constructor', '__proto__', 'toString', 'hasOwnProperty'])('a key "%s" is an unknown setting, not an internal error', (key) => {
    const dir = tempDir();
    writeFileSync(join(dir, '.boxbuild.json'), `{"${key}": "x"}`);
    expect(() => loadConfig(findConfigFiles(dir, { XDG_CONFIG_HOME: dir }))).toThrow(expect.objectContaining({ exitCode: 2, message: expect.stringContaining(`unknown setting "${key}"`) }));
  });

  test('a user config directory that cannot be read (a symlink loop) is skipped with one notice', () => {
    const home = tempDir();
    symlinkSync('boxbuild', join(home, 'boxbuild'));
    const config = loadConfig(findConfigFiles(home, { XDG_CONFIG_HOME: home }));
    expect(config.skipped.map(describeSkipped)).toEqual([`skipped config file ${join(home, 'boxbuild/config.json')}: cannot look into its directory (ELOOP)`]);
  });

  test.skipIf(process.getuid?.() === 0)('a project directory that cannot be searched is skipped with one notice, and none above it is taken', () => {
    const dir = tempDir();
    const locked = join(dir, 'locked');
    mkdirSync(join(locked, 'sub'), { recursive: true });
    chmodSync(locked, 0o600); // readable, not searchable
    try {
      const config = loadConfig(findConfigFiles(join(locked, 'sub'), { XDG_CONFIG_HOME: dir }));
      expect(config.skipped.map(describeSkipped)).toEqual([`skipped config file ${join(locked, 'sub/.boxbuild.json')}: cannot look into its directory (EACCES)`]);
    } finally {
      chmodSync(locked, 0o700);
    }
  });
});
