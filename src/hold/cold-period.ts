/**
 * The cold period of one target and what it teaches (README "Long cold starts"): from the first
 * request held (or wake) while the target is cold until it becomes ready. Its duration is the
 * cold start that the ETA learns from and that `x-coldfront-cold-start-ms` reports; the ETA gives
 * the waiting comments and Retry-After their numbers.
 */
import { performance } from "node:perf_hooks";
import { ColdStartEta } from "./eta.js";

export class ColdPeriod {
  readonly eta: ColdStartEta;
  /** performance.now() of the first request held (or wake) in this cold period. */
  #since: number | undefined;
  #lastMs: number | undefined;
  /** performance.now() since which nothing waits, while the period goes on. */
  #idleSince: number | undefined;
  readonly #staleAfter: number;

  /**
   * A period ends only at ready: clients that gave up do not make the cold start shorter. One
   * left without demand for longer than `staleAfterMs` (the hold timeout: no request could still
   * be waiting from it) starts anew with the next demand, so a start that never came does not
   * count into the next one.
   */
  constructor(expectedColdStartMs: number | undefined, staleAfterMs: number) {
    this.eta = new ColdStartEta(expectedColdStartMs);
    this.#staleAfter = staleAfterMs;
  }

  get active(): boolean {
    return this.#since !== undefined;
  }

  /** The duration of the last cold start that ended in ready, ms. */
  get lastMs(): number | undefined {
    return this.#lastMs;
  }

  /** Demand arrived while cold: the period starts now unless it already runs. */
  begin(now = performance.now()): boolean {
    const idle = this.#idleSince;
    this.#idleSince = undefined;
    if (this.#since !== undefined && (idle === undefined || now - idle <= this.#staleAfter)) return false;
    this.#since = now;
    return true;
  }

  /** Restarts the period (the target went cold again with demand waiting). */
  restart(now = performance.now()): void {
    this.#since = now;
    this.#idleSince = undefined;
  }

  /** Nothing waits now; the period goes on until ready. */
  idle(now = performance.now()): void {
    if (this.#since !== undefined && this.#idleSince === undefined) this.#idleSince = now;
  }

  /** The target became ready: returns the cold start's duration when a period ran. */
  end(now = performance.now()): number | undefined {
    const since = this.#since;
    this.#since = undefined;
    this.#idleSince = undefined;
    if (since === undefined) return undefined;
    this.#lastMs = now - since;
    this.eta.record(this.#lastMs);
    return this.#lastMs;
  }

  /** How long this cold period has run; undefined when none runs. */
  elapsedMs(now = performance.now()): number | undefined {
    return this.#since === undefined ? undefined : now - this.#since;
  }

  /** Time left of this cold start by the ETA; undefined when no period runs or nothing is known. */
  remainingMs(now = performance.now()): number | undefined {
    const elapsed = this.elapsedMs(now);
    return elapsed === undefined ? undefined : this.eta.remainingMs(elapsed);
  }

  /** The SSE comment that tells a waiting client what it waits for, with the ETA when known. */
  waitingComment(target: string, now = performance.now()): string {
    const left = this.remainingMs(now);
    if (left === undefined) return `waiting for ${target}`;
    return left > 0
      ? `waiting for ${target}, about ${Math.ceil(left / 1000)}s left`
      : `waiting for ${target}, taking longer than the expected ${Math.round((this.eta.expectedMs ?? 0) / 1000)}s`;
  }
}
