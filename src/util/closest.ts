/** Levenshtein distance: insertions, deletions and substitutions. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/** The candidate within edit distance 2 of `word`, if any (the nearest): for "did you mean". */
export function closest(word: string, candidates: string[]): string | undefined {
  const [best] = candidates.map((candidate) => ({ candidate, d: distance(word, candidate) })).filter(({ d }) => d <= 2).sort((x, y) => x.d - y.d);
  return best?.candidate;
}
