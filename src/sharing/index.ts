import { ninePBackend } from './ninep.js';
import { sshfsBackend } from './sshfs.js';
import type { SharingBackend, SharingName } from './types.js';
import { virtiofsBackend, virtiofsUsability } from './virtiofs.js';

export type SharingChoice = SharingName | 'auto';

export interface SharingOptions {
  /** The virtiofsd to use (`--virtiofsd PATH`); searched for when absent. */
  virtiofsd?: string;
}

export function sharingBackend(name: SharingName, options: SharingOptions = {}): SharingBackend {
  if (name === 'virtiofs') return virtiofsBackend(options);
  return name === 'sshfs' ? sshfsBackend : ninePBackend;
}

/** `auto`: virtiofs when a virtiofsd is usable for this user here, else 9p; says why. */
export async function chooseSharing(choice: SharingChoice, options: SharingOptions = {}): Promise<{ name: SharingName; why?: string }> {
  if (choice !== 'auto') return { name: choice };
  const { daemon, namespacing, reason } = await virtiofsUsability(options.virtiofsd);
  return daemon && namespacing ? { name: 'virtiofs', why: `${daemon.path} is usable` } : { name: '9p', why: reason };
}

export type { ActiveSharing, GuestMount, Share, SharingBackend, SharingName } from './types.js';
