/** Text someone else chose (a file name in an image, a field a registry serves), fit for one line of an error: control characters escaped, long text cut. */
export function shown(text: string, max = 200): string {
  const escaped = text.replace(/[\x00-\x1f\x7f-\x9f]/g, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return escaped.length > max ? `${escaped.slice(0, max)}…` : escaped;
}
