/**
 * The cold-start ETA of one target (README "Long cold starts"): learned from its recent cold
 * starts (first held request until ready), as a high percentile of the last few, so one lucky
 * fast start does not make every client come back too early; before any was seen, the configured
 * prior `hold.expectedColdStart`, and without one it is unknown: coldfront does not invent a
 * number that clients would then wait for.
 */

/** Cold starts kept for the estimate and for /status. */
export const ETA_WINDOW = 20;
/** The estimate: the nearest-rank p90 of the kept durations. */
const PERCENTILE = 0.9;

export interface ColdStartSample {
  /** Date.now() when it ended (the target became ready). */
  readonly at: number;
  readonly ms: number;
}

export class ColdStartEta {
  readonly #prior: number | undefined;
  readonly #samples: ColdStartSample[] = [];
  #expected: number | undefined;

  constructor(priorMs: number | undefined) {
    this.#prior = priorMs;
    this.#expected = priorMs;
  }

  record(ms: number, at = Date.now()): void {
    this.#samples.push({ at, ms });
    if (this.#samples.length > ETA_WINDOW) this.#samples.shift();
    const sorted = this.#samples.map((s) => s.ms).sort((a, b) => a - b);
    this.#expected = sorted[Math.min(sorted.length - 1, Math.ceil(PERCENTILE * sorted.length) - 1)] as number;
  }

  /** The expected duration of a cold start, in ms; undefined when nothing is known. */
  get expectedMs(): number | undefined {
    return this.#expected;
  }

  get learned(): boolean {
    return this.#samples.length > 0;
  }

  /** Oldest first. */
  get samples(): readonly ColdStartSample[] {
    return this.#samples;
  }

  get prior(): number | undefined {
    return this.#prior;
  }

  /** Expected time left of a cold start that began `elapsedMs` ago; 0 once overdue. */
  remainingMs(elapsedMs: number): number | undefined {
    return this.#expected === undefined ? undefined : Math.max(0, this.#expected - elapsedMs);
  }
}
