/**
 * What an exchange tells the one who watches it (README "Observing requests"): request logs and
 * OpenTelemetry traces both see a request's life through this narrow interface, so the hot path
 * pays one `undefined` check per event when neither is on, and neither knows the other.
 */

export interface ExchangeFacts {
  readonly method: string;
  /** The path only: a query string may carry secrets and never reaches a log or a span. */
  readonly path: string;
  /** Request headers as Node parsed them (traceparent, tracestate are read from here). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** performance.now() at arrival. */
  readonly arrivedAt: number;
}

export interface FinishedFacts {
  /** The status the client got (0 when it went away before any). */
  readonly status: number;
  /** The outcome label of coldfront_requests_total, or the error type of a refusal at the door. */
  readonly outcome: string;
  /** Request body bytes, and response body bytes written to the client. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** ms held in total (0 when never held). */
  readonly heldMs: number;
  /** ms from the first upstream attempt's start to the end of the response (undefined: none). */
  readonly upstreamMs: number | undefined;
}

export interface ExchangeObserver {
  /** Routed to `target`. */
  routed(target: string): void;
  /** Held; `position` is how many were queued ahead of it at arrival. */
  held(position: number): void;
  /** Its hold ended: "released" (a replay starts) or how it was settled. */
  holdEnded(outcome: string, heldMs: number): void;
  /**
   * An upstream attempt starts (1 for the first). Returns headers to add to it as a flat
   * [name, value, ...] list (W3C traceparent), or undefined.
   */
  attemptStarted(attempt: number): readonly string[] | undefined;
  /** The upstream's response head arrived. */
  attemptHead(status: number): void;
  /** The attempt ended: the forward result kind, and the cold signal when it was one. */
  attemptEnded(kind: string, coldReason?: string): void;
  /** The exchange is over (answered, or the client left). Called once. */
  finished(facts: FinishedFacts): void;
}

/** Makes an observer per request, or undefined for a request it does not watch (sampling). */
export interface ObserverFactory {
  start(facts: ExchangeFacts): ExchangeObserver | undefined;
  /** Flush and stop (exporters). */
  stop(): Promise<void>;
}
