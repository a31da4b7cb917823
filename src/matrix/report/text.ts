/*
 * Text from builds (log lines, error lines, names from the matrix file) made safe for XML and HTML:
 * a log line may hold markup, terminal escapes or bytes XML forbids.
 */

/** Terminal escape sequences (colours, cursor moves): noise outside a terminal. */
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]/g;
/** What XML 1.0 forbids (control characters, lone surrogates, U+FFFE/U+FFFF); HTML is spared them too. */
const FORBIDDEN = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** `text` without terminal escapes and characters XML forbids. */
export const cleanText = (text: string): string => text.replace(ANSI, '').replace(FORBIDDEN, '');

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '\n': '&#10;', '\r': '&#13;', '\t': '&#9;' };

/** Cleaned and escaped for element content. */
export const escapeText = (text: string): string => cleanText(text).replace(/[&<>"']/g, (char) => ENTITIES[char]!);

/** Cleaned and escaped for an attribute value in double quotes (line breaks kept as references). */
export const escapeAttribute = (text: string): string => cleanText(text).replace(/[&<>"'\n\r\t]/g, (char) => ENTITIES[char]!);

/** A duration for people: 0.8 s, 12.3 s, 4 min 05 s, 1 h 02 min. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, '0')} s`;
  return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')} min`;
}
