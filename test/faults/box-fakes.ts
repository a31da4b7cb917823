import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { onTestFinished } from 'vitest';

/** A fresh directory for one test, removed when the test has finished (also when it failed). */
export function testDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Stand-ins for apt-cache and apt-get (first on PATH), so that making the debian box fails or
 * hangs where a test wants it to, without a network. FAKE_APT picks what apt-get does: "hang"
 * (records its pid in apt-get.pid, then sleeps), "fail" (exit 100), "empty" (writes empty .debs).
 */
export function fakeAptTools(dir: string): { path: string; pidFile: string } {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const pidFile = join(dir, 'apt-get.pid');
  const script = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  script('apt-cache', 'echo "$2"; echo "  Depends: linux-image-6.1.0-fake-amd64"');
  script(
    'apt-get',
    `case "$FAKE_APT" in
  hang) echo $$ > "${pidFile}.new"; mv "${pidFile}.new" "${pidFile}"; exec sleep 60 ;;
  fail) echo "E: Unable to locate package linux-image-6.1.0-fake-amd64" >&2; exit 100 ;;
  empty) for arg; do case $arg in -*|download) ;; *) : > "\${arg%%:*}_1_amd64.deb" ;; esac; done ;;
esac`,
  );
  return { path: `${bin}:${process.env.PATH}`, pidFile };
}

/** Resolves once `path` exists. */
export function untilFile(path: string): Promise<void> {
  return new Promise((resolve) => {
    const watcher = watch(dirname(path), () => check());
    const check = () => {
      if (!existsSync(path)) return;
      watcher.close();
      resolve();
    };
    check();
  });
}

/** Resolves once the child has printed `text` on its stderr. */
export function untilStderr(child: { stderr: NodeJS.ReadableStream | null }, text: string): Promise<string> {
  let seen = '';
  return new Promise((resolve) =>
    child.stderr!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes(text)) resolve(seen);
    }),
  );
}

/** Whether a process runs (a zombie, killed and not yet reaped by its new parent, does not). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export const isRoot = process.getuid?.() === 0;

/**
 * Runs a shell script in a mount namespace of its own in which `cache` is a fresh tmpfs of `size`
 * (root only: the host's mounts stay as they are). The script prints sections, `echo "== NAME"`
 * then their output; returns each section's output, trimmed.
 */
export async function onSmallDisk(cache: string, size: string, script: string, timeoutMs = 90_000): Promise<Record<string, string>> {
  const mounted = `set -e\nmkdir -p "${cache}" && mount -t tmpfs -o size=${size} tmpfs "${cache}"\n${script}`;
  const { stdout } = await execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', mounted], { timeout: timeoutMs });
  const sections: Record<string, string> = {};
  let section: string | undefined;
  for (const line of stdout.split('\n')) {
    const heading = /^== (.+)$/.exec(line)?.[1];
    if (heading !== undefined) sections[(section = heading)] = '';
    else if (section !== undefined) sections[section] += `${line}\n`;
  }
  return Object.fromEntries(Object.entries(sections).map(([name, text]) => [name, text.trim()]));
}
