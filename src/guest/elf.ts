/** What a dynamically linked ELF executable needs at run time. */
export interface ElfDependencies {
  /** The program interpreter (dynamic loader), e.g. /lib64/ld-linux-x86-64.so.2. */
  interpreter?: string;
  /** DT_NEEDED sonames, e.g. libc.so.6. */
  needed: string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;

/** Reads the interpreter and DT_NEEDED entries of a 64-bit little-endian ELF file. */
export function elfDependencies(elf: Buffer): ElfDependencies {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error('not a 64-bit little-endian ELF file');
  }
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  const segments = Array.from({ length: phnum }, (_, i) => {
    const at = phoff + i * phentsize;
    return {
      type: elf.readUInt32LE(at),
      offset: Number(elf.readBigUInt64LE(at + 8)),
      vaddr: Number(elf.readBigUInt64LE(at + 16)),
      filesz: Number(elf.readBigUInt64LE(at + 32)),
    };
  });
  const cString = (at: number) => elf.toString('latin1', at, elf.indexOf(0, at));
  const interp = segments.find((segment) => segment.type === PT_INTERP);
  const dynamic = segments.find((segment) => segment.type === PT_DYNAMIC);
  const result: ElfDependencies = { interpreter: interp ? cString(interp.offset) : undefined, needed: [] };
  if (!dynamic) return result;
  const entries: Array<[bigint, bigint]> = [];
  for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.filesz; at += 16) {
    const tag = elf.readBigInt64LE(at);
    if (tag === 0n) break;
    entries.push([tag, elf.readBigUInt64LE(at + 8)]);
  }
  const strtabAddress = Number(entries.find(([tag]) => tag === DT_STRTAB)?.[1] ?? 0n);
  const load = segments.find((s) => s.type === PT_LOAD && strtabAddress >= s.vaddr && strtabAddress < s.vaddr + s.filesz);
  if (!load) return result;
  const strtab = strtabAddress - load.vaddr + load.offset;
  result.needed = entries.filter(([tag]) => tag === DT_NEEDED).map(([, value]) => cString(strtab + Number(value)));
  return result;
}
