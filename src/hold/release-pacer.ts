/**
 * The release pacer of one target (DESIGN.md "Request lifecycle" step 5; README "Release after a
 * cold start"). Its contract in one sentence: never more than `release.concurrency` replays
 * without a response head (each counted until its head, or `release.slotTimeout`), and never
 * more than `release.maxInFlight` replays unfinished.
 *
 * Under that cap a window moves, as TCP's congestion window does under the receiver's: after
 * each cold period it starts at `release.initialWindow` and grows by one per replay the upstream
 * took (slow start); an overload answer, or a connection dropped before its head, halves it
 * (never below 1, at most once per window of replays) and from then on it grows by one per
 * window's worth of replays taken, so it settles just under what the backend takes instead of
 * overshooting it again at once. The cap is never a starting point and the window never passes it.
 *
 * It owns the slots, the window, the backoff after cold and overload answers and the timers
 * that bring the release back; the gate only asks `canStart()` and `waitMs()`, takes a slot
 * with `start()`, and reports what the upstream said.
 */
import { performance } from "node:perf_hooks";

export interface PacerOptions {
  /** release.concurrency; 0 = no cap (the window alone paces). */
  readonly concurrency: number;
  readonly initialWindow: number;
  /** release.maxInFlight; 0 = no bound. */
  readonly maxInFlight: number;
  readonly slotTimeout: number;
  readonly retryBackoff: number;
  readonly retryBackoffMax: number;
}

/** One replay's claim on the release window and on the in-flight bound. */
export interface ReleaseSlot {
  /** The upstream's response head arrived: the pre-head slot is free. */
  head(): void;
  /** The upstream took the replay: the window may grow. Counted once. */
  taken(): void;
  /** An overload answer, or a connection dropped before any head: the window halves. */
  overload(): void;
  /** The attempt is over: frees whatever the slot still holds. Idempotent. */
  end(): void;
}

/**
 * Replays started in one turn of the event loop before the release yields (setImmediate): a
 * large window, or release.concurrency 0, would otherwise start a whole backlog in one
 * synchronous stretch, and every warm request, stream and probe would wait it out
 * (bench/README.md, hold capacity: loop delay while 10,000 are released).
 */
export const RELEASE_BATCH = 64;

/** ms: see waitMs(). */
const TIMER_SLACK = 1;

export class ReleasePacer {
  readonly #o: PacerOptions;
  /** The window's upper bound: release.concurrency, or none. */
  readonly #cap: number;
  readonly #initial: number;
  /** Called when the release should continue: a slot freed, a backoff ended, a yield came back. */
  readonly #pump: () => void;
  /** Replays without a head, within slotTimeout. */
  #slots = 0;
  /** Replays started and not ended. */
  #inFlight = 0;
  #window: number;
  /** Past it the window grows by one per window of replays taken, not per replay. */
  #threshold = Number.POSITIVE_INFINITY;
  /** Replays taken since the window last grew in that regime. */
  #takenSinceGrowth = 0;
  /** Replays started so far; one started before the last decrease does not halve again. */
  #started = 0;
  #decreasedAt = -1;
  /** performance.now() before which no replay starts: backoff after a cold or overload answer. */
  #retryAt = 0;
  #backoff = 0;
  #timer: NodeJS.Timeout | undefined;
  #yield: NodeJS.Immediate | undefined;
  #pumpQueued = false;

  constructor(options: PacerOptions, pump: () => void) {
    this.#o = options;
    this.#pump = pump;
    this.#cap = options.concurrency > 0 ? options.concurrency : Number.POSITIVE_INFINITY;
    this.#initial = Math.min(options.initialWindow, this.#cap);
    this.#window = this.#initial;
  }

  /** Replays holding a pre-head slot now. */
  get slots(): number {
    return this.#slots;
  }

  /** Replays started and not finished (coldfront_replays_in_flight). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The window now (coldfront_release_window); never above release.concurrency. */
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
    const max = this.#o.maxInFlight;
    return this.#slots < this.#window && (max <= 0 || this.#inFlight < max);
  }

  /** The in-flight bound, not the window, is what stops the release now. */
  get atInFlightBound(): boolean {
    const max = this.#o.maxInFlight;
    return max > 0 && this.#inFlight >= max;
  }

  /**
   * How long until the next replay may start; 0 for now. Node's timers run on the event loop's
   * cached clock and can fire a fraction of a millisecond before performance.now() reaches the
   * deadline, so a wait under TIMER_SLACK counts as over.
   */
  waitMs(now = performance.now()): number {
    const wait = this.#retryAt - now;
    return wait > TIMER_SLACK ? wait : 0;
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
    this.#inFlight++;
    const seq = this.#started++;
    let preHead = true;
    let running = true;
    let grew = false;
    const freePreHead = (): void => {
      if (!preHead) return;
      preHead = false;
      clearTimeout(timer);
      this.#slots--;
      this.#schedulePump();
    };
    const taken = (): void => {
      if (grew) return;
      grew = true;
      this.#grow();
    };
    // Taken: no failure within slotTimeout (a non-streaming generation has no head yet).
    const timer = setTimeout(() => {
      taken();
      freePreHead();
    }, this.#o.slotTimeout);
    return {
      head: freePreHead,
      taken,
      overload: () => this.#decrease(seq),
      end: () => {
        freePreHead();
        if (!running) return;
        running = false;
        this.#inFlight--;
        this.#schedulePump();
      },
    };
  }

  /** The upstream answered: the backoff of this round is over. */
  answered(): void {
    this.#backoff = 0;
    this.#retryAt = 0;
  }

  /**
   * A cold answer: back off, and start the window small again (the fresh replica, or the
   * gateway's view of it, is not ready for more).
   */
  coldAnswer(): void {
    this.backOff();
    this.#window = this.#initial;
    this.#threshold = Number.POSITIVE_INFINITY;
    this.#takenSinceGrowth = 0;
  }

  /**
   * Sets the backoff for this round, once: answers that arrive while a backoff is running do not
   * grow it again. The release comes back by itself when it ends, queue or not, so the warm path
   * is taken again then.
   */
  backOff(): void {
    const now = performance.now();
    if (now < this.#retryAt) return;
    const o = this.#o;
    this.#backoff = this.#backoff === 0 ? o.retryBackoff : Math.min(o.retryBackoffMax, this.#backoff * 2);
    this.#retryAt = now + this.#backoff;
    this.later(this.#backoff);
  }

  /** Queue empty and the backoff over: the warm path takes new arrivals again. */
  settleIfIdle(now = performance.now()): void {
    if (this.#retryAt !== 0 && this.waitMs(now) === 0) this.#retryAt = 0;
  }

  /** The target became ready after a cold period: no backoff, the window from its start. */
  reset(): void {
    this.#backoff = 0;
    this.#retryAt = 0;
    this.#window = this.#initial;
    this.#threshold = Number.POSITIVE_INFINITY;
    this.#takenSinceGrowth = 0;
    this.#decreasedAt = this.#started - 1;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#yield) clearImmediate(this.#yield);
    this.#timer = undefined;
    this.#yield = undefined;
  }

  #grow(): void {
    if (this.#window >= this.#cap) return;
    if (this.#window < this.#threshold) {
      this.#window++;
      return;
    }
    if (++this.#takenSinceGrowth >= this.#window) {
      this.#takenSinceGrowth = 0;
      this.#window++;
    }
  }

  /** Halves the window once per window: replays started before the last decrease do not count. */
  #decrease(seq: number): void {
    this.backOff();
    if (seq <= this.#decreasedAt) return;
    this.#decreasedAt = this.#started - 1;
    this.#window = Math.max(1, Math.floor(this.#window / 2));
    this.#threshold = this.#window;
    this.#takenSinceGrowth = 0;
  }

  /**
   * A freed slot lets the release continue after the current callback (undici's response-start
   * among them) has returned: never re-entrantly inside it, and never before the gate has acted
   * on the answer that freed it.
   */
  #schedulePump(): void {
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    queueMicrotask(() => {
      this.#pumpQueued = false;
      this.#pump();
    });
  }
}
