/** Several observers of one exchange as one (request logs and traces both on). */
import type { ExchangeFacts, ExchangeObserver, FinishedFacts, ObserverFactory } from "./observer.js";

class Both implements ExchangeObserver {
  readonly #a: ExchangeObserver;
  readonly #b: ExchangeObserver;
  constructor(a: ExchangeObserver, b: ExchangeObserver) {
    this.#a = a;
    this.#b = b;
  }
  routed(target: string): void {
    this.#a.routed(target);
    this.#b.routed(target);
  }
  held(position: number): void {
    this.#a.held(position);
    this.#b.held(position);
  }
  holdEnded(outcome: string, heldMs: number): void {
    this.#a.holdEnded(outcome, heldMs);
    this.#b.holdEnded(outcome, heldMs);
  }
  attemptStarted(attempt: number): readonly string[] | undefined {
    const a = this.#a.attemptStarted(attempt);
    const b = this.#b.attemptStarted(attempt);
    return a === undefined ? b : b === undefined ? a : [...a, ...b];
  }
  attemptHead(status: number): void {
    this.#a.attemptHead(status);
    this.#b.attemptHead(status);
  }
  attemptEnded(kind: string, coldReason?: string): void {
    this.#a.attemptEnded(kind, coldReason);
    this.#b.attemptEnded(kind, coldReason);
  }
  finished(facts: FinishedFacts): void {
    this.#a.finished(facts);
    this.#b.finished(facts);
  }
}

/** One factory for all of `factories`; undefined when there is none (the warm path's case). */
export function composeObservers(factories: readonly ObserverFactory[]): ObserverFactory | undefined {
  if (factories.length === 0) return undefined;
  if (factories.length === 1) return factories[0];
  return {
    start(facts: ExchangeFacts) {
      let out: ExchangeObserver | undefined;
      for (const f of factories) {
        const o = f.start(facts);
        if (o !== undefined) out = out === undefined ? o : new Both(out, o);
      }
      return out;
    },
    stop: async () => {
      await Promise.all(factories.map((f) => f.stop()));
    },
  };
}
