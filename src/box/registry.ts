import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BoxbuildError, usageError } from '../errors.js';
import { closest } from '../util/closest.js';
import { type Arch, hostArch, isArch } from './arch.js';
import { type OciReference, parseReference } from './oci/reference.js';
import { importedRegistryFiles } from './import/entries.js';
import { dearmorPublicKey } from './openpgp.js';
import { type Checksum, type FileSource, SOURCE_ROLES, type SourceRole, isSha256, resolveUrls, urlFileName } from './sources.js';

/** How the guest is driven: boxbuild's own agent, or the KIWI box contract. */
export type GuestProtocol = 'boxbuild' | 'kiwi';

export interface BoxArchEntry {
  /** Extra kernel command-line words for this architecture. */
  cmdline: string;
  /** Remote boxes: the files to download (empty for boxes made on this machine). */
  sources: FileSource[];
  /** Made system boxes: the Debian packages installed besides the box's own (box and architecture lists). */
  packages: string[];
  /** Boxes published in an OCI registry: where, and the key their signature must verify with (when pinned). */
  oci?: { ref: OciReference; signedBy?: Buffer };
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
    private readonly prefix = '',
  ) {}

  /** How errors name a field: the file, the box and the field's path. */
  where(field: string): string {
    return `${this.file}: box "${this.box}": field "${this.prefix}${field}"`;
  }

  fail(field: string, expected: string): never {
    throw new BoxbuildError('usage', `${this.where(field)} must be ${expected}`);
  }

  keys(): string[] {
    return Object.keys(this.obj);
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

  /** A string or a list of non-empty strings. */
  stringList(field: string, fallback: string[] = [], what = 'a URL or a list of URLs'): string[] {
    const value = this.obj[field] ?? fallback;
    const list = typeof value === 'string' ? [value] : value;
    if (!Array.isArray(list) || list.some((item) => typeof item !== 'string' || item === '')) this.fail(field, what);
    return list as string[];
  }

  object(field: string): Json {
    const value = this.obj[field];
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, 'an object');
    return value as Json;
  }

  optionalObject(field: string): Json {
    return this.obj[field] === undefined ? {} : this.object(field);
  }

  /** A reader for a nested object, whose errors name the field by its path (e.g. "arches.x86_64.cmdline"). */
  nested(field: string): FieldReader {
    return new FieldReader(this.file, this.box, this.optionalObject(field), `${this.prefix}${field}.`);
  }

  checkKnown(known: readonly string[]): void {
    for (const key of Object.keys(this.obj)) {
      if (!known.includes(key)) {
        throw new BoxbuildError('usage', `${this.file}: box "${this.box}": unknown field "${this.prefix}${key}" (known: ${known.join(', ')})`);
      }
    }
  }
}

const BOX_FIELDS = ['description', 'protocol', 'make', 'packages', 'buildProgram', 'memoryMiB', 'cpus', 'console', 'cmdline', 'mirrors', 'openpgpKey', 'files', 'oci', 'arches'] as const;
const ARCH_FIELDS = ['cmdline', 'packages', 'mirrors', 'openpgpKey', 'files', 'oci'] as const;
const FILE_FIELDS = ['url', 'sha256', 'signature'] as const;

function parseChecksum(reader: FieldReader, role: SourceRole): Checksum {
  const value = reader.optionalString('sha256')?.toLowerCase();
  if (value === undefined && role === 'packages') return 'none';
  if (value === 'sidecar') return 'sidecar';
  if (value === undefined || !isSha256(value)) reader.fail('sha256', '64 hex digits or "sidecar"');
  return { pinned: value };
}

/** The pinned OpenPGP key of an architecture (its own, else the box's), when there is one. */
function parseKey(box: FieldReader, archReader: FieldReader): Buffer | undefined {
  const reader = archReader.keys().includes('openpgpKey') ? archReader : box;
  const armored = reader.optionalString('openpgpKey');
  if (armored === undefined) return undefined;
  return dearmorPublicKey(armored) ?? reader.fail('openpgpKey', 'an ASCII-armored OpenPGP public key block ("gpg --armor --export KEY")');
}

/** Whose signature a file's checksum sidecar must carry: `"signature": "sidecar"` asks for `<url>.sha256.asc`. */
function parseSignature(reader: FieldReader, checksum: Checksum, key: Buffer | undefined): Buffer | undefined {
  if (reader.optionalString('signature') === undefined) return undefined;
  reader.oneOf('signature', ['sidecar'] as const);
  if (checksum !== 'sidecar') reader.fail('signature', 'used with "sha256": "sidecar" (it signs the checksum file)');
  return key ?? reader.fail('signature', 'used with an "openpgpKey" of the box or the architecture');
}

/** One file of an architecture; `{arch}` in its URLs and mirrors stands for the architecture. */
function parseSource(reader: FieldReader, role: SourceRole, arch: Arch, mirrors: string[], key: Buffer | undefined): FileSource {
  reader.checkKnown(FILE_FIELDS);
  const withArch = (url: string) => url.replaceAll('{arch}', arch);
  const urls = resolveUrls(reader.stringList('url').map(withArch), mirrors.map(withArch));
  if (urls.length === 0) reader.fail('url', 'an absolute URL when there are no "mirrors"');
  for (const url of urls) {
    if (!/^https?:\/\//.test(url)) reader.fail('url', `an http(s) URL (not "${url}")`);
  }
  const name = urlFileName(urls[0]!);
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(name) || name === 'box.json') reader.fail('url', 'a URL that ends in a file name');
  const checksum = parseChecksum(reader, role);
  return { role, name, urls, checksum, signedBy: parseSignature(reader, checksum, key) };
}

/**
 * The OCI source of one architecture (its own `oci`, else the box's), which replaces `files` and
 * `mirrors`; a pinned `openpgpKey` then verifies the signature published with the box.
 */
function parseOci(box: FieldReader, archReader: FieldReader): BoxArchEntry['oci'] {
  const reader = archReader.keys().includes('oci') ? archReader : box;
  const text = reader.optionalString('oci');
  if (text === undefined) return undefined;
  for (const field of ['files', 'mirrors'] as const) {
    if (archReader.keys().includes(field) || box.keys().includes(field)) reader.fail('oci', `used without "${field}" (a box comes from a registry or from files)`);
  }
  return { ref: parseReference(text, reader.where('oci')), signedBy: parseKey(box, archReader) };
}

/** The files of one architecture: the box's `files` (templates), overridden role by role by the architecture's. */
function parseSources(box: FieldReader, archReader: FieldReader, arch: Arch, isMade: boolean, isOci: boolean): FileSource[] {
  const boxFiles = box.nested('files');
  const archFiles = archReader.nested('files');
  boxFiles.checkKnown(SOURCE_ROLES);
  archFiles.checkKnown(SOURCE_ROLES);
  const mirrors = archReader.stringList('mirrors', box.stringList('mirrors'));
  const key = parseKey(box, archReader);
  const sources = SOURCE_ROLES.flatMap((role) => {
    const reader = archFiles.keys().includes(role) ? archFiles : boxFiles.keys().includes(role) ? boxFiles : undefined;
    return reader ? [parseSource(reader.nested(role), role, arch, mirrors, key)] : [];
  });
  const roles = new Set(sources.map((source) => source.role));
  if (isOci) return sources;
  if (isMade) {
    if (sources.length > 0) archReader.fail('files', 'absent for a box made on this machine ("make")');
    return sources;
  }
  const direct = roles.has('kernel') && roles.has('initrd');
  if (direct === roles.has('kernelTarball') || (!direct && (roles.has('kernel') || roles.has('initrd')))) {
    archReader.fail('files', 'either "kernel" and "initrd", or "kernelTarball" (box files or the architecture\'s)');
  }
  const names = sources.map((source) => source.name);
  const duplicate = names.find((name, index) => names.indexOf(name) !== index);
  if (duplicate) archReader.fail('files', `files with different names (two are "${duplicate}")`);
  return sources;
}

/** The Debian packages of a made system box: the box's list, then the architecture's. */
function parsePackages(box: FieldReader, archReader: FieldReader, make: string | undefined): string[] {
  const what = 'a list of Debian package names';
  const packages = [...box.stringList('packages', [], what), ...archReader.stringList('packages', [], what)];
  if (packages.length > 0 && make !== 'debian-system') (archReader.keys().includes('packages') ? archReader : box).fail('packages', 'used only by boxes made with "make": "debian-system"');
  for (const name of packages) if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) box.fail('packages', `${what} (not "${name}")`);
  return packages;
}

function parseBox(file: string, name: string, raw: unknown): BoxEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new BoxbuildError('usage', `${file}: box "${name}" must be an object`);
  }
  const reader = new FieldReader(file, name, raw as Json);
  reader.checkKnown(BOX_FIELDS);
  const make = reader.optionalString('make');
  const arches: Partial<Record<Arch, BoxArchEntry>> = {};
  const archesReader = reader.nested('arches');
  for (const arch of Object.keys(reader.object('arches'))) {
    if (!isArch(arch)) throw new BoxbuildError('usage', `${file}: box "${name}": field "arches" has unknown architecture "${arch}"`);
    const archReader = archesReader.nested(arch);
    archReader.checkKnown(ARCH_FIELDS);
    const oci = parseOci(reader, archReader);
    const sources = parseSources(reader, archReader, arch, make !== undefined, oci !== undefined);
    arches[arch] = { cmdline: archReader.string('cmdline', ''), sources, packages: parsePackages(reader, archReader, make), ...(oci ? { oci } : {}) };
  }
  if (Object.keys(arches).length === 0) throw new BoxbuildError('usage', `${file}: box "${name}": field "arches" lists no architecture`);
  const protocol = reader.oneOf('protocol', ['boxbuild', 'kiwi'] as const, 'boxbuild');
  const entry: BoxEntry = {
    name,
    description: reader.string('description', ''),
    protocol,
    make,
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
    throw new BoxbuildError('usage', `${file}: not valid JSON: ${(error as Error).message}`, { cause: error });
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

/**
 * Loads the bundled registry, the boxes imported into the cache at `cacheRoot` (when given), then
 * each override file in order (later files win).
 */
export function loadRegistry(overrides: string[] = [], cacheRoot?: string): Registry {
  const registry: Registry = new Map();
  for (const file of [BUNDLED_REGISTRY, ...(cacheRoot ? importedRegistryFiles(cacheRoot) : []), ...overrides]) {
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

/** The architecture a box runs for without --arch: the host's, or the only one the box has (an image imported for another). */
export function defaultArch(box: BoxEntry | undefined): Arch {
  const only = Object.keys(box?.arches ?? {});
  return only.length === 1 && only[0] !== hostArch() ? (only[0] as Arch) : hostArch();
}

export function findBox(registry: Registry, name: string, arch: Arch): { box: BoxEntry; archEntry: BoxArchEntry } {
  const box = registry.get(name);
  if (!box) {
    const names = [...registry.keys()].sort();
    const near = closest(name, names);
    throw usageError(`unknown box "${name}"${near ? ` (did you mean "${near}"?)` : ''}; the boxes are ${names.join(', ')}`);
  }
  const archEntry = box.arches[arch];
  if (!archEntry) throw usageError(`box "${name}" has no ${arch} variant (it has: ${Object.keys(box.arches).join(', ')})`);
  return { box, archEntry };
}
