import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, relative, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type Arch, hostArch, parseArch } from '../box/arch.js';
import { BoxbuildError, usageError } from '../errors.js';
import { parseDurationMs } from '../util/size.js';
import type { MatrixBuild } from './types.js';

/*
 * The matrix file (YAML, or JSON): `defaults` and a list of `builds`, whose box, arch and
 * description may be lists that expand into their cross product. Every error is one line naming
 * the file, the build and the field.
 */

/** More builds than this after expansion are refused (a typo's cross product, a hostile file). */
export const MAX_BUILDS = 10_000;
const MAX_FILE_BYTES = 4 * 2 ** 20;
export const MAX_RETRIES = 10;
/** YAML aliases a file may use: enough for shared lists, too few for an alias bomb. */
const MAX_ALIASES = 100;
const FIELDS = ['box', 'arch', 'description', 'args', 'target', 'timeout', 'retries', 'tags'];
const PLACEHOLDERS = ['box', 'arch', 'id'];

/** The fields of a build (or of `defaults`), checked. */
interface Entry {
  box?: string[];
  arch?: Arch[];
  description?: string[];
  args?: string[];
  target?: string;
  timeoutSeconds?: number;
  retries?: number;
  tags?: string[];
}

export interface SpecOptions {
  /** Throws (a usage error) when the registry has no box of that name for that architecture. */
  checkBox?: (box: string, arch: Arch) => void;
  /** --boxes files: given to every build. */
  registryFiles?: string[];
}

const fail = (at: string, problem: string, cause?: unknown) => new BoxbuildError('usage', `${at}: ${problem}`, { cause });

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return `the number ${value} (quote it to make it a string)`;
  if (typeof value === 'boolean') return `${value} (quote it to make it a string)`;
  if (value instanceof Uint8Array) return 'binary data';
  return typeof value === 'object' ? 'a map' : typeof value;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function text(value: unknown, at: string): string {
  if (typeof value !== 'string') throw fail(at, `must be a string, not ${describe(value)}`);
  if (value === '') throw fail(at, 'must not be empty');
  // Neither can reach boxbuild's command line intact.
  if (/\0|\p{Surrogate}/u.test(value)) throw fail(at, 'holds a NUL character or a lone UTF-16 surrogate');
  return value;
}

function list(value: unknown, at: string): string[] {
  if (!Array.isArray(value)) throw fail(at, `must be a list of strings, not ${describe(value)}`);
  return value.map((item, index) => text(item, `${at}[${index}]`));
}

/** A string, or a non-empty list of them. */
function oneOrMore(value: unknown, at: string): string[] {
  if (!Array.isArray(value)) return [text(value, at)];
  if (value.length === 0) throw fail(at, 'must not be an empty list');
  return list(value, at);
}

function readEntry(raw: unknown, where: string): Entry {
  if (!isMap(raw)) throw fail(where, `must be a map of ${FIELDS.join(', ')}, not ${describe(raw)}`);
  const unknown = Object.keys(raw).find((key) => !FIELDS.includes(key));
  if (unknown !== undefined) throw fail(`${where}.${unknown}`, `unknown field (the fields are ${FIELDS.join(', ')})`);
  const entry: Entry = {};
  const at = (field: string) => `${where}.${field}`;
  if (raw.box !== undefined) {
    entry.box = oneOrMore(raw.box, at('box'));
    const bad = entry.box.find((box) => !/^[a-z0-9][a-z0-9._-]*$/.test(box));
    if (bad !== undefined) throw fail(at('box'), `"${bad}" is no box name (see "boxbuild box list")`);
  }
  if (raw.arch !== undefined) entry.arch = oneOrMore(raw.arch, at('arch')).map((arch) => parseArch(arch, at('arch')));
  if (raw.description !== undefined) entry.description = oneOrMore(raw.description, at('description'));
  if (raw.args !== undefined) entry.args = list(raw.args, at('args'));
  if (raw.target !== undefined) {
    entry.target = text(raw.target, at('target'));
    const placeholder = /\{([^}]*)\}/g.exec(entry.target.replace(/\{(box|arch|id)\}/g, ''));
    if (placeholder) throw fail(at('target'), `unknown placeholder ${placeholder[0]} (known: ${PLACEHOLDERS.map((name) => `{${name}}`).join(', ')})`);
  }
  if (raw.timeout !== undefined) {
    const timeout = typeof raw.timeout === 'number' ? String(raw.timeout) : text(raw.timeout, at('timeout'));
    entry.timeoutSeconds = parseDurationMs(timeout, at('timeout')) / 1000;
  }
  if (raw.retries !== undefined) {
    if (!Number.isInteger(raw.retries) || (raw.retries as number) < 0 || (raw.retries as number) > MAX_RETRIES) throw fail(at('retries'), `must be a whole number from 0 to ${MAX_RETRIES}, not ${JSON.stringify(raw.retries) ?? describe(raw.retries)}`);
    entry.retries = raw.retries as number;
  }
  if (raw.tags !== undefined) entry.tags = oneOrMore(raw.tags, at('tags'));
  return entry;
}

/** The file's data: JSON for *.json, else YAML (aliases capped). */
function parseText(text: string, file: string): unknown {
  try {
    return extname(file) === '.json' ? JSON.parse(text) : parseYaml(text, { maxAliasCount: MAX_ALIASES, uniqueKeys: true });
  } catch (error) {
    throw fail(file, (error as Error).message.split('\n')[0]!.replace(/:$/, ''), error);
  }
}

/** A stable id: the same build of the same file has the same id run after run (wherever the checkout lies). */
const buildId = (box: string, arch: Arch, description: string, args: string[]) => createHash('sha256').update(JSON.stringify([box, arch, description, args])).digest('hex').slice(0, 12);

/**
 * Parses and checks a matrix file's text (`file` names it in errors; relative paths in it are
 * relative to its directory) and expands it into its builds.
 */
export function parseMatrix(text: string, file: string, options: SpecOptions = {}): MatrixBuild[] {
  const data = parseText(text, file);
  if (!isMap(data)) throw fail(file, `must be a map with "builds" (and "defaults"), not ${describe(data)}`);
  const unknown = Object.keys(data).find((key) => key !== 'builds' && key !== 'defaults');
  if (unknown !== undefined) throw fail(`${file}: ${unknown}`, 'unknown field (a matrix file has "defaults" and "builds")');
  const defaults = data.defaults === undefined ? {} : readEntry(data.defaults, `${file}: defaults`);
  if (!Array.isArray(data.builds) || data.builds.length === 0) throw fail(`${file}: builds`, `must be a non-empty list of builds, not ${describe(data.builds)}`);
  if (data.builds.length > MAX_BUILDS) throw fail(`${file}: builds`, `${data.builds.length} builds; at most ${MAX_BUILDS}`);

  const base = dirname(resolve(file));
  const builds: MatrixBuild[] = [];
  const seen = new Map<string, string>();
  const targets = new Map<string, string>();
  const directories = new Set<string>();
  const boxes = new Set<string>();
  data.builds.forEach((raw, index) => {
    const where = `${file}: builds[${index}]`;
    const entry = { ...defaults, ...readEntry(raw, where) };
    const tags = [...new Set([...(defaults.tags ?? []), ...(entry.tags ?? [])])];
    if (!entry.box) throw fail(`${where}.box`, 'missing (the box to build in)');
    if (!entry.description) throw fail(`${where}.description`, 'missing (the description directory)');
    const arches = entry.arch ?? [hostArch()];
    const count = entry.box.length * arches.length * entry.description.length;
    if (builds.length + count > MAX_BUILDS) throw fail(where, `expands to ${count} builds, more than ${MAX_BUILDS} in all`);
    for (const description of entry.description) {
      const path = resolve(base, description);
      if (!directories.has(path)) {
        const stat = statSync(path, { throwIfNoEntry: false });
        if (!stat?.isDirectory()) throw fail(`${where}.description`, `${path} ${stat ? 'is no directory' : 'does not exist'}`);
        directories.add(path);
      }
      // As the file names it (relative ones normalised): the id stays when the checkout moves.
      const shown = isAbsolute(description) ? path : relative(base, path) || '.';
      const args = entry.args ?? [];
      const label = [shown, ...args].join(' ');
      for (const box of entry.box) {
        for (const arch of arches) {
          if (options.checkBox && !boxes.has(`${box} ${arch}`)) {
            try {
              options.checkBox(box, arch);
            } catch (error) {
              throw fail(where, (error as Error).message, error);
            }
            boxes.add(`${box} ${arch}`);
          }
          const id = buildId(box, arch, shown, args);
          const name = `${box} ${arch} ${label}`;
          const earlier = seen.get(id);
          if (earlier) throw fail(where, `repeats ${earlier}: ${name}`);
          seen.set(id, `builds[${index}]`);
          const target = entry.target === undefined ? undefined : resolve(base, entry.target.replace(/\{(box|arch|id)\}/g, (_, key: string) => ({ box, arch, id })[key]!));
          if (target !== undefined) {
            const other = targets.get(target);
            if (other) throw fail(`${where}.target`, `${target} is also the target of ${other}; put {box}, {arch} or {id} in it`);
            targets.set(target, name);
          }
          builds.push({
            id, name, label, box, arch, description: path, args, tags,
            ...(target === undefined ? {} : { target }),
            ...(options.registryFiles?.length ? { registryFiles: options.registryFiles } : {}),
            ...(entry.timeoutSeconds === undefined ? {} : { timeoutSeconds: entry.timeoutSeconds }),
            retries: entry.retries ?? 0,
          });
        }
      }
    }
  });
  return builds;
}

/** Reads a matrix file and expands it (see parseMatrix). */
export function loadMatrix(file: string, options: SpecOptions = {}): MatrixBuild[] {
  let text: string;
  try {
    const { size } = statSync(file);
    if (size > MAX_FILE_BYTES) throw usageError(`matrix file ${file}: ${size} bytes; at most ${MAX_FILE_BYTES}`);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof BoxbuildError) throw error;
    throw new BoxbuildError('usage', `cannot read the matrix file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
  return parseMatrix(text, file, options);
}
