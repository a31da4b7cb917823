import { usageError } from '../errors.js';
import { ninePBackend } from './ninep.js';
import type { SharingBackend, SharingName } from './types.js';

const BACKENDS: Partial<Record<SharingName, SharingBackend>> = { '9p': ninePBackend };

export function sharingBackend(name: SharingName): SharingBackend {
  const backend = BACKENDS[name];
  if (!backend) throw usageError(`the ${name} sharing backend is not available yet`);
  return backend;
}

export type { ActiveSharing, GuestMount, Share, SharingBackend, SharingName } from './types.js';
