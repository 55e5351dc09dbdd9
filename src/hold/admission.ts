/**
 * Who may be held (README "Bounds"; "Who may wake a model"): at most `limits.maxPending` per
 * target, and at most `maxClientShare` of that per client identity (a verified API key, else the
 * client address), so one runaway client cannot fill the queue for everyone.
 */
import type { Config } from "../config/schema.js";
import type { ErrorType } from "../errors.js";

export interface Refusal {
  readonly type: ErrorType & ("queue_full" | "rate_limited");
  readonly message: string;
}

export class Admission {
  readonly #target: string;
  readonly #maxPending: number;
  readonly #maxPerClient: number;
  /** Held tickets per client identity. */
  readonly #perClient = new Map<string, number>();

  constructor(target: string, limits: Config["limits"]) {
    this.#target = target;
    this.#maxPending = limits.maxPending;
    this.#maxPerClient = Math.max(1, Math.floor(limits.maxPending * limits.maxClientShare));
  }

  /** Why a new request of `identity` may not join a queue of `held`; undefined when it may. */
  refuse(identity: string, held: number): Refusal | undefined {
    if (held >= this.#maxPending)
      return {
        type: "queue_full",
        message: `target '${this.#target}' already holds ${this.#maxPending} requests`,
      };
    const mine = this.#perClient.get(identity) ?? 0;
    if (mine >= this.#maxPerClient)
      return {
        type: "rate_limited",
        message: `this client already has ${mine} requests held for target '${this.#target}' (at most ${this.#maxPerClient} of ${this.#maxPending})`,
      };
    return undefined;
  }

  /** A ticket of `identity` joined the queue (a replay sent back joins again). */
  add(identity: string): void {
    this.#perClient.set(identity, (this.#perClient.get(identity) ?? 0) + 1);
  }

  /** A ticket of `identity` left the queue. */
  remove(identity: string): void {
    const n = (this.#perClient.get(identity) ?? 1) - 1;
    if (n <= 0) this.#perClient.delete(identity);
    else this.#perClient.set(identity, n);
  }
}
