/**
 * The release pacer of one target (DESIGN.md "Request lifecycle" step 5; README "Release after a
 * cold start"): how many replays may be waiting for their response head at once, and when the
 * next one may start. It owns the slots, the window, the backoff after cold answers and the
 * timers that bring the release back; the gate only asks `canStart()` and `waitMs()`, takes a
 * slot with `start()`, and reports what the upstream said.
 */
import { performance } from "node:perf_hooks";

export interface PacerOptions {
  /** release.concurrency; 0 = no bound. */
  readonly concurrency: number;
  readonly slotTimeout: number;
  readonly retryBackoff: number;
  readonly retryBackoffMax: number;
}

/** One replay's claim on the release window. */
export interface ReleaseSlot {
  /** The response head arrived (or the attempt ended without one): the slot is free. */
  head(): void;
  /** The upstream took the replay: the window may grow. Counted once. */
  taken(): void;
  /** The attempt is over; frees the slot if head() did not. Idempotent. */
  end(): void;
}

/**
 * Replays started in one turn of the event loop before the release yields (setImmediate): a
 * large window, or release.concurrency 0, would otherwise start a whole backlog in one
 * synchronous stretch, and every warm request, stream and probe would wait it out
 * (bench/README.md, hold capacity: loop delay while 10,000 are released).
 */
export const RELEASE_BATCH = 64;

export class ReleasePacer {
  readonly #o: PacerOptions;
  /** Called when the release should continue: a slot freed, a backoff ended, a yield came back. */
  readonly #pump: () => void;
  #slots = 0;
  #window: number;
  /** performance.now() before which no replay starts: backoff after a cold answer. */
  #retryAt = 0;
  #backoff = 0;
  #timer: NodeJS.Timeout | undefined;
  #yield: NodeJS.Immediate | undefined;

  constructor(options: PacerOptions, pump: () => void) {
    this.#o = options;
    this.#pump = pump;
    this.#window = options.concurrency;
  }

  /** Replays holding a slot now (no response head yet, and within slotTimeout). */
  get slots(): number {
    return this.#slots;
  }

  get window(): number {
    return this.#window;
  }

  get backoffMs(): number {
    return this.#backoff;
  }

  /** A backoff was set and not yet cleared: new arrivals queue rather than take the warm path. */
  get backingOff(): boolean {
    return this.#retryAt !== 0;
  }

  /** The release will continue by itself (a backoff timer or a yield is pending). */
  get scheduled(): boolean {
    return this.#timer !== undefined || this.#yield !== undefined;
  }

  canStart(): boolean {
    return this.#o.concurrency <= 0 || this.#slots < this.#window;
  }

  /** How long until the next replay may start; 0 for now. */
  waitMs(now = performance.now()): number {
    return Math.max(0, this.#retryAt - now);
  }

  /** Continue the release after `ms`, or in the next turn of the event loop. */
  later(ms?: number): void {
    if (ms !== undefined && ms > 0) {
      if (this.#timer) return;
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#pump();
      }, ms);
      return;
    }
    if (this.#yield) return;
    this.#yield = setImmediate(() => {
      this.#yield = undefined;
      this.#pump();
    });
  }

  start(): ReleaseSlot {
    this.#slots++;
    let held = true;
    let grew = false;
    const taken = (): void => {
      if (grew) return;
      grew = true;
      this.#window++;
    };
    const free = (): void => {
      if (!held) return;
      held = false;
      clearTimeout(timer);
      this.#slots--;
      this.#pump();
    };
    // Taken: no failure within slotTimeout (a non-streaming generation has no head yet).
    const timer = setTimeout(() => {
      taken();
      free();
    }, this.#o.slotTimeout);
    return { head: free, taken, end: free };
  }

  /** The upstream answered: the backoff of this round is over. */
  answered(): void {
    this.#backoff = 0;
    this.#retryAt = 0;
  }

  /**
   * A cold answer: back off (once per round: answers that arrive while a backoff is running do
   * not grow it again) and start the window small again.
   */
  coldAnswer(): void {
    this.backOff();
    this.#window = this.#o.concurrency;
  }

  /** Sets the backoff for this round, once. */
  backOff(): void {
    const now = performance.now();
    if (now < this.#retryAt) return;
    const o = this.#o;
    this.#backoff = this.#backoff === 0 ? o.retryBackoff : Math.min(o.retryBackoffMax, this.#backoff * 2);
    this.#retryAt = now + this.#backoff;
  }

  /** Queue empty and the backoff over: the warm path takes new arrivals again. */
  settleIfIdle(now = performance.now()): void {
    if (this.#retryAt !== 0 && now >= this.#retryAt) this.#retryAt = 0;
  }

  /** The target became ready after a cold period: no backoff, the window from its start. */
  reset(): void {
    this.#backoff = 0;
    this.#retryAt = 0;
    this.#window = this.#o.concurrency;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#yield) clearImmediate(this.#yield);
    this.#timer = undefined;
    this.#yield = undefined;
  }
}
