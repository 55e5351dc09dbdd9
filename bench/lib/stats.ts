/** Small statistics and number formatting for the results tables. */

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile (p in 0..100) of the values; NaN when there are none. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function max(xs: readonly number[]): number {
  return xs.reduce((m, x) => (x > m ? x : m), Number.NEGATIVE_INFINITY);
}

/** A number for a table: "—" when it does not exist, else `digits` decimals. */
export function fmt(x: number | undefined, digits = 0): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A latency from autocannon's 1 ms-resolution histogram: "<1" rather than a misleading 0. */
export function fmtMs(x: number | undefined): string {
  return x === 0 ? "<1" : fmt(x);
}

/** a / b as "0.87x", or "—" when either is missing. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "—";
  return `${(a / b).toFixed(2)}x`;
}
