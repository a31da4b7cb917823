import { describe, expect, test } from 'vitest';
import * as api from '../../src/index.js';

describe('the public API (import "boxbuild")', () => {
  test('exports run, build, the error type and its exit codes, and nothing of the internals', () => {
    expect(Object.keys(api).sort()).toEqual(['BoxbuildError', 'ExitCode', 'VERSION', 'build', 'run']);
    const error = new api.BoxbuildError('timeout', 'x', { cause: new Error('inner') });
    expect([error.kind, error.exitCode, (error.cause as Error).message]).toEqual(['timeout', 124, 'inner']);
    expect(api.VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });

  test('a request that cannot run is refused before any box is fetched', async () => {
    const refused = api.run({ box: 'debian', argv: ['true'], shares: [{ host: '/nonexistent/dir' }], cacheDir: '/nonexistent/cache' });
    await expect(refused).rejects.toMatchObject({ name: 'BoxbuildError', kind: 'usage', message: 'share /nonexistent/dir does not exist' });
  });
});
