import { usageError } from '../errors.js';

export const ARCHES = ['x86_64', 'aarch64', 's390x', 'ppc64le', 'riscv64'] as const;
export type Arch = (typeof ARCHES)[number];

const NODE_TO_ARCH: Partial<Record<NodeJS.Architecture, Arch>> = {
  x64: 'x86_64',
  arm64: 'aarch64',
  s390x: 's390x',
  ppc64: 'ppc64le',
  riscv64: 'riscv64',
};

export function hostArch(): Arch {
  const arch = NODE_TO_ARCH[process.arch];
  if (!arch) throw usageError(`this host's architecture (${process.arch}) is not supported`);
  return arch;
}

export function isArch(value: string): value is Arch {
  return (ARCHES as readonly string[]).includes(value);
}

/** `option` names where the value came from, in the error. */
export function parseArch(value: string, option = '--arch'): Arch {
  const aliases: Record<string, Arch> = { amd64: 'x86_64', x64: 'x86_64', arm64: 'aarch64', ppc64el: 'ppc64le' };
  const arch = aliases[value] ?? value;
  if (!isArch(arch)) throw usageError(`${option}: unknown architecture "${value}" (known: ${ARCHES.join(', ')})`);
  return arch;
}

/** Debian's name for an architecture (for `apt-get download pkg:ARCH`). */
export function debianArch(arch: Arch): string {
  return { x86_64: 'amd64', aarch64: 'arm64', s390x: 's390x', ppc64le: 'ppc64el', riscv64: 'riscv64' }[arch];
}

/** Debian's multiarch triplet (where an architecture's shared libraries live). */
export function debianTriplet(arch: Arch): string {
  return { x86_64: 'x86_64-linux-gnu', aarch64: 'aarch64-linux-gnu', s390x: 's390x-linux-gnu', ppc64le: 'powerpc64le-linux-gnu', riscv64: 'riscv64-linux-gnu' }[arch];
}
