import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { BoxbuildError } from '../errors.js';

/** A Debian package downloaded with `apt-get download` (no root needed). */
export interface DebianPackage {
  name: string;
  version: string;
  file: string;
}

const fail = (message: string, cause?: unknown) => new BoxbuildError('boxUnavailable', message, { cause });

/** The concrete kernel package a Debian meta-package (e.g. linux-image-amd64) points to today. */
export async function resolveMetaPackage(meta: string, prefix: string): Promise<string> {
  const result = await execa('apt-cache', ['depends', meta], { reject: false });
  const match = new RegExp(`Depends: (${prefix}[^\\s:]*)`).exec(result.stdout);
  if (!match) {
    throw fail(`apt knows no package ${meta}; run "apt-get update" as root first${result.stderr ? ` (${result.stderr.trim()})` : ''}`);
  }
  return match[1]!;
}

/** Downloads packages into `dir` and reports their versions. `names` may carry ":arch". */
export async function downloadPackages(names: string[], dir: string): Promise<DebianPackage[]> {
  const result = await execa('apt-get', ['download', '-q', ...names], { cwd: dir, reject: false, all: true });
  if (result.exitCode !== 0) {
    throw fail(`apt-get download ${names.join(' ')} failed: ${result.all?.trim().split('\n').pop() ?? result.message}`);
  }
  const files = (await readdir(dir)).filter((file) => file.endsWith('.deb'));
  return Promise.all(
    names.map(async (spec) => {
      const name = spec.split(':')[0]!;
      const file = files.find((candidate) => candidate.startsWith(`${name}_`));
      if (!file) throw fail(`apt-get download did not produce ${name}`);
      const { stdout: version } = await execa('dpkg-deb', ['--field', join(dir, file), 'Version']);
      return { name, version, file: join(dir, file) };
    }),
  );
}

/** Unpacks a .deb's files (not its maintainer scripts) into `dir`, as any user. */
export async function unpackPackage(pkg: DebianPackage, dir: string): Promise<void> {
  const result = await execa('dpkg-deb', ['--extract', pkg.file, dir], { reject: false });
  if (result.exitCode !== 0) throw fail(`cannot unpack ${pkg.file}: ${result.stderr.trim()}`);
}
