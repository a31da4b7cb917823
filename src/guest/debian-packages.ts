import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { mustRun, runTool } from './make-tool.js';

/** A Debian package downloaded with `apt-get download` (no root needed). */
export interface DebianPackage {
  name: string;
  version: string;
  file: string;
}

const fail = (message: string) => new BoxbuildError('boxUnavailable', message);

/** The concrete kernel package a Debian meta-package (e.g. linux-image-amd64) points to today. */
export async function resolveMetaPackage(meta: string, prefix: string, signal?: AbortSignal): Promise<string> {
  const result = await runTool('apt-cache', ['depends', meta], { signal });
  const match = new RegExp(`Depends: (${prefix}[^\\s:]*)`).exec(result.stdout);
  if (!match) {
    throw fail(`apt knows no package ${meta}; run "apt-get update" as root first${result.stderr ? ` (${result.stderr.trim()})` : ''}`);
  }
  return match[1]!;
}

/** Downloads packages into `dir` and reports their versions. `names` may carry ":arch". */
export async function downloadPackages(names: string[], dir: string, signal?: AbortSignal): Promise<DebianPackage[]> {
  await mustRun(`apt-get download ${names.join(' ')}`, 'apt-get', ['download', '-q', ...names], { cwd: dir, signal });
  const files = (await readdir(dir)).filter((file) => file.endsWith('.deb'));
  return Promise.all(
    names.map(async (spec) => {
      const name = spec.split(':')[0]!;
      const file = files.find((candidate) => candidate.startsWith(`${name}_`));
      if (!file) throw fail(`apt-get download did not produce ${name}`);
      const { stdout: version } = await mustRun(`reading the version of ${file}`, 'dpkg-deb', ['--field', join(dir, file), 'Version'], { signal });
      return { name, version: version.trim(), file: join(dir, file) };
    }),
  );
}

/** Unpacks a .deb's files (not its maintainer scripts) into `dir`, as any user. */
export async function unpackPackage(pkg: DebianPackage, dir: string, signal?: AbortSignal): Promise<void> {
  await mustRun(`unpacking ${pkg.file}`, 'dpkg-deb', ['--extract', pkg.file, dir], { signal });
}
