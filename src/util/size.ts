import { usageError } from '../errors.js';

const UNITS: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 };

/**
 * Parses a memory size into MiB. A bare number means GiB (as in kiwi's boxbuild);
 * suffixes K, M, G, T (optionally followed by "B" or "iB", any case) are binary units.
 */
export function parseMemoryMiB(text: string, option = '--box-memory'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt])?(?:i?b)?\s*$/i.exec(text);
  if (!match) throw usageError(`${option}: "${text}" is not a size (examples: 2, 2G, 512M)`);
  const unit = match[2] ? UNITS[match[2].toUpperCase()] : UNITS.G;
  const mib = Math.floor(Number(match[1]) * unit);
  if (mib < 128) throw usageError(`${option}: ${text} is too small; a box needs at least 128M`);
  return mib;
}

/** The longest a Node timer can wait (2^31-1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** Parses a duration: a bare number is seconds; suffixes ms, s, m, h. Returns milliseconds. */
export function parseDurationMs(text: string, option: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!match) throw usageError(`${option}: "${text}" is not a duration (examples: 90, 90s, 10m, 2h)`);
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 's']!;
  const ms = Math.round(Number(match[1]) * factor);
  if (ms <= 0) throw usageError(`${option}: must be greater than zero`);
  if (ms > MAX_DURATION_MS) throw usageError(`${option}: ${text} is too long; at most ${MAX_DURATION_MS} ms (about 24.8 days)`);
  return ms;
}

export function parsePositiveInt(text: string, option: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1) throw usageError(`${option}: "${text}" is not a positive whole number`);
  return Number(text);
}

/** A byte count for people: 512 B, 3.4 MiB, 1.20 GiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}
