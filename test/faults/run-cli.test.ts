import { execa } from 'execa';
import { describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { CLI, TEST_CACHE } from '../helpers/env.js';

/* Every failure of the command line is one `boxbuild: error:` line with exit 2; nothing starts. */

describe('command-line errors', () => {
  test("commander's own errors, with its suggestion", async () => {
    const unknown = await runIsolated(['exec', '--bx', 'debian', '--', 'true']);
    expect(unknown).toMatchObject({ exitCode: 2, stderr: "boxbuild: error: unknown option '--bx' (Did you mean --box?)" });
    const missing = await runIsolated(['--box']);
    expect(missing).toMatchObject({ exitCode: 2, stderr: "boxbuild: error: option '--box <name>' argument missing" });
    const command = await runIsolated(['box', 'lst']);
    expect(command.exitCode).toBe(2);
    expect(command.stderr).toMatch(/^boxbuild: error: unknown command 'lst' \(Did you mean list\?\)$/);
  });

  test('build arguments before -- are pointed after it', async () => {
    for (const args of [['--box', 'debian', '--description', 'd', '--target-dir', 't'], ['--box', 'debian', '--target-dir=t', '--', 'x']]) {
      const result = await runIsolated(args);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(/^boxbuild: error: --(description|target-dir) is a build argument: put build arguments after -- \(boxbuild --box NAME -- --description DIR --target-dir DIR\)$/);
    }
  });

  test('an argument that is not UTF-8 is refused, not altered', async () => {
    // The shell passes the byte 0xff, which Node would turn into U+FFFD.
    const script = 'exec "$0" "$1" exec --box debian -- echo "$(printf "a\\377b")"';
    const result = await execa('sh', ['-c', script, process.execPath, CLI], { reject: false, env: { BOXBUILD_CACHE_DIR: TEST_CACHE } });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe('boxbuild: error: argument "a\uFFFDb" is not valid UTF-8: boxbuild can only pass on UTF-8 arguments');
  });
});
