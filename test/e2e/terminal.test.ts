import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated } from '../helpers/box-cli.js';
import { tempDir } from '../helpers/temp.js';
import { onTerminal } from '../helpers/terminal.js';

/* The user's terminal lent to the guest: exec -t, shell, --debug-shell (on a real pseudo-terminal). */

const VM = ['--box', 'debian', '--accel', 'tcg', '-q'];

/** Waits for the terminal's run to end; returns its status and what it showed. */
async function ended(run: ReturnType<typeof onTerminal>) {
  const result = await run.child;
  expectNoLeftovers(run.tmp);
  return { status: result.exitCode, shown: run.shown() };
}

describe('exec -t', () => {
  test('the command runs on a terminal of the host terminal\'s size and TERM; its status is passed on and the host terminal is given back as it was', async () => {
    const run = onTerminal(['exec', ...VM, '-t', '--', 'sh', '-c', 'test -t 0 && test -t 1 && test -t 2 && echo ALL-TERMINAL; stty size; echo "TERM=$TERM"; printf "a\\nb\\n"; exit 5']);
    const { status, shown } = await ended(run);
    expect(status).toBe(5);
    expect(shown).toContain('ALL-TERMINAL\n33 77\nTERM=xterm-256color\na\nb\n');
    expect(shown).not.toContain('\r'); // each line end arrives as the guest terminal made it (\r\n), once
    expect(shown).toContain('MODE-KEPT');
  });

  test('a resized host terminal resizes the guest\'s: the command gets SIGWINCH and sees the new size', async () => {
    const run = onTerminal(['exec', ...VM, '-t', '--', 'sh', '-c', 'trap "echo WINCH" WINCH; echo READY; until [ "$(stty size)" = "40 100" ]; do sleep 0.1; done; echo RESIZED']);
    await run.until('READY');
    execFileSync('stty', ['-F', run.device(), 'rows', '40', 'cols', '100']);
    const { status, shown } = await ended(run);
    expect(status).toBe(0);
    expect(shown).toMatch(/READY\n[\s\S]*WINCH[\s\S]*RESIZED|READY\n[\s\S]*RESIZED[\s\S]*WINCH/);
  });

  test('Ctrl-C goes to the guest command (the host terminal is raw), not to boxbuild', async () => {
    const run = onTerminal(['exec', ...VM, '-t', '--', 'sh', '-c', 'trap "echo GOT-INT; exit 7" INT; echo READY; while :; do sleep 0.1; done']);
    await run.until('READY');
    run.type('\x03');
    const { status, shown } = await ended(run);
    expect(status).toBe(7);
    expect(shown).toContain('GOT-INT');
    expect(shown).toContain('MODE-KEPT');
  });

  test('Enter ~ . ends the run (as in ssh): echoed with a line end, exit 130, the VM stopped, the terminal given back', async () => {
    const run = onTerminal(['exec', ...VM, '-t', '--', 'sh', '-c', 'echo READY; sleep 600']);
    await run.until('READY');
    run.type('\r~.');
    const { status, shown } = await ended(run);
    expect(status).toBe(130);
    // The guest's output may stop mid-line (the rest of READY's line end lost with the VM): the echo ends the line.
    // The guest's own echo of the Enter may still arrive after it, on a loaded host.
    expect(shown).toMatch(/~\.\n(?:\r\n)?boxbuild: error: interrupted/);
    expect(shown).toContain('MODE-KEPT');
  });

  test('a terminal that reads slowly holds the command back; nothing is lost', async () => {
    const run = onTerminal(['exec', ...VM, '-t', '--', 'sh', '-c', 'seq 1 120000; echo END']);
    run.child.stdout!.pause(); // the terminal shows nothing for 5 s while the command writes 750 kB
    await new Promise((resolve) => setTimeout(resolve, 5000));
    run.child.stdout!.resume();
    const { status, shown } = await ended(run);
    expect(status).toBe(0);
    const lines = shown.split('\n');
    const expected = [...Array.from({ length: 120000 }, (_, i) => String(i + 1)), 'END'];
    const first = expected.findIndex((line, i) => lines[i] !== line);
    expect(first, `line ${first + 1}: ${JSON.stringify(lines.slice(Math.max(0, first - 2), first + 3))}`).toBe(-1);
  });

  test('in an aarch64 guest too', async () => {
    const { status, shown } = await ended(onTerminal(['exec', ...VM, '--arch', 'aarch64', '-t', '--', 'sh', '-c', 'uname -m; tty; stty size']));
    expect(status).toBe(0);
    expect(shown).toMatch(/aarch64\n\/dev\/pts\/0\n33 77\n/);
  });

  test('-t without a terminal on stdin is refused before any VM starts', async () => {
    const result = await runIsolated(['exec', ...VM, '-t', '--', 'true']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe("boxbuild: error: -t needs a terminal: boxbuild's stdin is not one");
  });
});

describe('boxbuild shell', () => {
  test('on a terminal: an interactive login shell in the guest, with the shares; exit ends the run with its status', async () => {
    const share = tempDir();
    writeFileSync(join(share, 'marker'), 'shared file\n');
    const run = onTerminal(['shell', ...VM, '--share', `${share}:/work`]);
    run.type('cat /work/marker; test -t 0 && echo "TERMINAL $(tty)"; echo "$((6 * 7))"\r');
    await run.until('42');
    run.type('exit 4\r');
    const { status, shown } = await ended(run);
    expect(status).toBe(4);
    expect(shown).toContain('shared file\n');
    expect(shown).toContain('TERMINAL /dev/pts/0');
    expect(shown).toContain('MODE-KEPT');
  });

  test('without a terminal: the shell reads its commands from stdin', async () => {
    const result = await runIsolated(['shell', ...VM], { input: 'echo "$((6 * 7))"; test -t 0 || echo NO-TERMINAL; exit 3\n', stdin: 'pipe' });
    expect([result.exitCode, result.stdout]).toEqual([3, '42\nNO-TERMINAL']);
  });

  test('takes no command', async () => {
    const result = await runIsolated(['shell', ...VM, '--', 'ls']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^boxbuild: error: shell takes no command/);
  });
});

describe('--debug-shell', () => {
  test('a failed command is followed by a shell in its VM, in its directory, shares mounted; the run ends with the command\'s status', async () => {
    const share = tempDir();
    mkdirSync(join(share, 'src'));
    const run = onTerminal(['exec', ...VM, '--debug-shell', '--share', `${share}:/work`, '-e', 'MARK=set', '--', 'sh', '-c', 'echo built >partial; echo FAILING; exit 9'], `cd ${share}/src;`);
    await run.until('a shell in its VM');
    run.type('echo "in $(pwd): $(cat partial) MARK=$MARK" ONCE-$((1 + 1)); exit 0\r');
    const { status, shown } = await ended(run);
    expect(status).toBe(9);
    expect(shown.match(/ONCE-2/g)).toHaveLength(1); // what is typed reaches the shell once
    expect(shown).toContain('FAILING\n');
    expect(shown).toMatch(/^boxbuild: the command failed with exit status 9; here is a shell in its VM/m);
    expect(shown).toContain('in /work/src: built MARK=set');
    expect(shown).toContain('MODE-KEPT');
  });

  test("a build that fails opens the shell too, in the build's directory (the target); one that succeeds does not", async () => {
    const description = tempDir();
    writeFileSync(join(description, 'build'), '#!/bin/sh\n[ -e /description/ok ] || { echo BUILD-FAILED; exit 6; }\n', { mode: 0o755 });
    const target = join(tempDir(), 'out');
    const build = () => onTerminal(['--box', 'debian', '--accel', 'tcg', '-q', '--debug-shell', '--', '--description', description, '--target-dir', target]);
    const failing = build();
    await failing.until('a shell in its VM');
    failing.type('ls /description; echo "in $(pwd)"; exit\r');
    const failed = await ended(failing);
    expect(failed.status).toBe(6);
    expect(failed.shown).toMatch(/BUILD-FAILED[\s\S]*\nbuild\r?\n/);
    expect(failed.shown).toMatch(/\nin \/target\r?\n/);
    writeFileSync(join(description, 'ok'), '');
    const passed = await ended(build());
    expect(passed.status).toBe(0);
    expect(passed.shown).not.toContain('a shell in its VM');
  });

  test('without a terminal on stdin it is refused before any VM starts', async () => {
    const result = await runIsolated(['exec', ...VM, '--debug-shell', '--', 'false']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe("boxbuild: error: --debug-shell needs a terminal: boxbuild's stdin is not one");
  });
});
