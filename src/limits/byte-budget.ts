/**
 * The process-wide byte budget of README "Sizing maxHeldBytes" (`limits.maxHeldBytes`): request
 * bodies being read, held, or waiting to be sent upstream all count against it, so that however
 * the bytes arrive (many slow bodies, a flood of max-size ones, rotating identities) coldfront's
 * memory for them stays under one number. Past it the listener answers 503 queue_full; nothing is
 * reset.
 *
 * Invariant: `used` is the sum of every live reservation; each reservation is returned exactly
 * once (Exchange and BodyReader own theirs and return them when the body is no longer kept).
 */
export class ByteBudget {
  readonly max: number;
  #used = 0;
  /** Refusals since start, for /status. */
  #refused = 0;

  constructor(max: number) {
    this.max = max;
  }

  get used(): number {
    return this.#used;
  }

  get refused(): number {
    return this.#refused;
  }

  /** Takes `bytes` if they fit; false (and nothing taken) if not. */
  tryReserve(bytes: number): boolean {
    if (this.#used + bytes > this.max) {
      this.#refused++;
      return false;
    }
    this.#used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#used -= bytes;
    if (this.#used < 0) throw new Error(`byte budget released more than it reserved (${this.#used})`);
  }
}
