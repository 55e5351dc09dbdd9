/**
 * Request logs, opt-in (`log.requests`, README "Observing requests"): one line per finished
 * request with target, method, path without query, status, held and upstream time, bytes and
 * outcome. Never a body, a query string or a header value: prompts and keys stay out of logs.
 * Sampled by `log.requestSample` for busy proxies.
 */
import type { FastifyBaseLogger } from "fastify";
import type { ExchangeFacts, ExchangeObserver, FinishedFacts, ObserverFactory } from "./observer.js";

class RequestLogLine implements ExchangeObserver {
  readonly #log: FastifyBaseLogger;
  readonly #method: string;
  readonly #path: string;
  #target: string | undefined;
  #attempts = 0;

  constructor(log: FastifyBaseLogger, facts: ExchangeFacts) {
    this.#log = log;
    this.#method = facts.method;
    this.#path = facts.path;
  }

  routed(target: string): void {
    this.#target = target;
  }
  held(): void {}
  holdEnded(): void {}
  attemptStarted(attempt: number): undefined {
    this.#attempts = attempt;
    return undefined;
  }
  attemptHead(): void {}
  attemptEnded(): void {}

  finished(f: FinishedFacts): void {
    this.#log.info(
      {
        target: this.#target ?? null,
        method: this.#method,
        path: this.#path,
        status: f.status,
        outcome: f.outcome,
        heldMs: Math.round(f.heldMs),
        upstreamMs: f.upstreamMs === undefined ? null : Math.round(f.upstreamMs),
        attempts: this.#attempts,
        bytesIn: f.bytesIn,
        bytesOut: f.bytesOut,
      },
      "request",
    );
  }
}

export function requestLog(log: FastifyBaseLogger, sample: number, random = Math.random): ObserverFactory {
  return {
    start: (facts) => (sample >= 1 || random() < sample ? new RequestLogLine(log, facts) : undefined),
    stop: async () => {},
  };
}
