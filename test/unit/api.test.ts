import { describe, expect, test } from 'vitest';
import * as api from '../../src/index.js';

describe('the public API (import "boxbuild")', () => {
  test('exports the runs, the box cache and the error type', () => {
    for (const name of ['runInBox', 'runKiwiBox', 'runInImage', 'buildCommand', 'execCommand', 'ensureBox', 'loadRegistry', 'findBox', 'cacheRoot']) {
      expect(typeof (api as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(new api.BoxbuildError('usage', 'x').exitCode).toBe(2);
    expect(api.VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });
});
