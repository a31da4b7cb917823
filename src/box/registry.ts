import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BoxbuildError, usageError } from '../errors.js';
import { type Arch, isArch } from './arch.js';

/** How the guest is driven: boxbuild's own agent, or the KIWI box contract. */
export type GuestProtocol = 'boxbuild' | 'kiwi';

export interface BoxArchEntry {
  /** Extra kernel command-line words for this architecture. */
  cmdline: string;
}

export interface BoxEntry {
  name: string;
  description: string;
  protocol: GuestProtocol;
  /** Boxes made on this machine say which maker makes them (e.g. "debian"). */
  make?: string;
  /** Guest path of the program that runs a build (boxbuild protocol). */
  buildProgram?: string;
  memoryMiB: number;
  cpus: number;
  console: 'ttyS0' | 'hvc0';
  cmdline: string;
  arches: Partial<Record<Arch, BoxArchEntry>>;
  /** The registry file this entry came from (for error messages). */
  origin: string;
}

export type Registry = Map<string, BoxEntry>;

export const BUNDLED_REGISTRY = fileURLToPath(new URL('../../boxes.json', import.meta.url));

type Json = Record<string, unknown>;

class FieldReader {
  constructor(
    private readonly file: string,
    private readonly box: string,
    private readonly obj: Json,
  ) {}

  private fail(field: string, expected: string): never {
    throw new BoxbuildError('usage', `${this.file}: box "${this.box}": field "${field}" must be ${expected}`);
  }

  string(field: string, fallback?: string): string {
    const value = this.obj[field] ?? fallback;
    if (typeof value !== 'string') this.fail(field, 'a string');
    return value;
  }

  optionalString(field: string): string | undefined {
    return this.obj[field] === undefined ? undefined : this.string(field);
  }

  positiveInt(field: string, fallback: number): number {
    const value = this.obj[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) this.fail(field, 'a positive whole number');
    return value;
  }

  oneOf<T extends string>(field: string, choices: readonly T[], fallback?: T): T {
    const value = this.obj[field] ?? fallback;
    if (!choices.includes(value as T)) this.fail(field, `one of ${choices.join(', ')}`);
    return value as T;
  }

  object(field: string): Json {
    const value = this.obj[field];
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, 'an object');
    return value as Json;
  }

  checkKnown(known: readonly string[], prefix = ''): void {
    for (const key of Object.keys(this.obj)) {
      if (!known.includes(key)) {
        throw new BoxbuildError('usage', `${this.file}: box "${this.box}": unknown field "${prefix}${key}" (known: ${known.join(', ')})`);
      }
    }
  }
}

const BOX_FIELDS = ['description', 'protocol', 'make', 'buildProgram', 'memoryMiB', 'cpus', 'console', 'cmdline', 'arches'] as const;

function parseBox(file: string, name: string, raw: unknown): BoxEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new BoxbuildError('usage', `${file}: box "${name}" must be an object`);
  }
  const reader = new FieldReader(file, name, raw as Json);
  reader.checkKnown(BOX_FIELDS);
  const arches: Partial<Record<Arch, BoxArchEntry>> = {};
  for (const [arch, archRaw] of Object.entries(reader.object('arches'))) {
    if (!isArch(arch)) throw new BoxbuildError('usage', `${file}: box "${name}": field "arches" has unknown architecture "${arch}"`);
    const archReader = new FieldReader(file, name, (archRaw ?? {}) as Json);
    archReader.checkKnown(['cmdline'], `arches.${arch}.`);
    arches[arch] = { cmdline: archReader.string('cmdline', '') };
  }
  if (Object.keys(arches).length === 0) throw new BoxbuildError('usage', `${file}: box "${name}": field "arches" lists no architecture`);
  const protocol = reader.oneOf('protocol', ['boxbuild', 'kiwi'] as const, 'boxbuild');
  const entry: BoxEntry = {
    name,
    description: reader.string('description', ''),
    protocol,
    make: reader.optionalString('make'),
    buildProgram: reader.optionalString('buildProgram'),
    memoryMiB: reader.positiveInt('memoryMiB', 1024),
    cpus: reader.positiveInt('cpus', 1),
    console: reader.oneOf('console', ['ttyS0', 'hvc0'] as const, 'ttyS0'),
    cmdline: reader.string('cmdline', ''),
    arches,
    origin: file,
  };
  if (protocol === 'boxbuild' && !entry.buildProgram) reader.string('buildProgram');
  return entry;
}

/** Parses one registry document ({ "boxes": { NAME: {...} } }) into entries, validating every field. */
export function parseRegistry(file: string, text: string): BoxEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new BoxbuildError('usage', `${file}: not valid JSON: ${(error as Error).message}`);
  }
  const boxes = (doc as Json | null)?.boxes;
  if (typeof boxes !== 'object' || boxes === null || Array.isArray(boxes)) {
    throw new BoxbuildError('usage', `${file}: expected an object with a "boxes" object`);
  }
  return Object.entries(boxes).map(([name, raw]) => {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new BoxbuildError('usage', `${file}: box name "${name}" must be lower-case letters, digits, ".", "_" or "-"`);
    return parseBox(file, name, raw);
  });
}

/** Loads the bundled registry, then each override file in order (later files win). */
export function loadRegistry(overrides: string[] = []): Registry {
  const registry: Registry = new Map();
  for (const file of [BUNDLED_REGISTRY, ...overrides]) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw usageError(`cannot read box registry ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`);
    }
    for (const entry of parseRegistry(file, text)) registry.set(entry.name, entry);
  }
  return registry;
}

export function findBox(registry: Registry, name: string, arch: Arch): { box: BoxEntry; archEntry: BoxArchEntry } {
  const box = registry.get(name);
  if (!box) throw usageError(`unknown box "${name}" (known: ${[...registry.keys()].sort().join(', ')})`);
  const archEntry = box.arches[arch];
  if (!archEntry) throw usageError(`box "${name}" has no ${arch} variant (it has: ${Object.keys(box.arches).join(', ')})`);
  return { box, archEntry };
}
