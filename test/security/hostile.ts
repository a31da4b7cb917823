import { chmodSync, copyFileSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Runner } from './runners.js';

/* What the hostile guest tests share: their builds and the rules the target must keep. */

export const BACKENDS = ['9p', 'virtiofs', 'sshfs'] as const;

const GUEST = fileURLToPath(new URL('./guest/', import.meta.url));
const S_IFMT = 0o170000;
const SPECIAL = new Map([[0o010000, 'FIFO'], [0o020000, 'character device'], [0o060000, 'block device'], [0o140000, 'socket']]);

/**
 * A description whose build is one of the hostile guest scripts (test/security/guest), with the
 * given programs beside it, and the files around it, all owned by the runner's user.
 */
export function hostileBuild(runner: Runner, script: string, programs: string[] = []) {
  const root = runner.workspace();
  const description = join(root, 'description');
  const target = join(root, 'target');
  mkdirSync(description);
  mkdirSync(target);
  copyFileSync(join(GUEST, script), join(description, 'build'));
  for (const program of programs) copyFileSync(program, join(description, basename(program)));
  for (const name of ['build', ...programs.map((program) => basename(program))]) chmodSync(join(description, name), 0o755);
  const victim = join(root, 'victim.txt');
  writeFileSync(victim, 'VICTIM\n');
  writeFileSync(join(description, 'victim-path'), victim);
  runner.own(root);
  return { root, description, target, victim };
}

/** The source of a guest helper program, to be compiled on the host (the guest has no compiler). */
export const guestSource = (name: string) => join(GUEST, name);

/** Every entry below `dir` (not following links) that breaks the rules of the target directory. */
export function violations(dir: string, owner: { uid: number; gid: number }): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stats = lstatSync(path);
    const special = SPECIAL.get(stats.mode & S_IFMT);
    if (special) found.push(`${name}: a ${special}`);
    if (stats.mode & 0o6000) found.push(`${name}: mode ${(stats.mode & 0o7777).toString(8)} (setuid/setgid)`);
    if (stats.uid !== owner.uid || stats.gid !== owner.gid) found.push(`${name}: owned by ${stats.uid}:${stats.gid}`);
    if (stats.isDirectory()) found.push(...violations(path, owner).map((line) => `${name}/${line}`));
  }
  return found;
}
