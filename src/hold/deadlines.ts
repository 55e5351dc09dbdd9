/**
 * How long a held request may wait, and what it hears when that runs out (DESIGN.md step 7;
 * README "Long cold starts"): the earlier of `limits.holdTimeout`, the client's own stated
 * timeout less a margin, and, for a non-streaming request, `limits.edgeTimeout` (an edge proxy in
 * front cuts a silent request; a streaming one is kept alive by early SSE headers).
 */
import { performance } from "node:perf_hooks";
import type { Config } from "../config/schema.js";
import { ColdfrontError } from "../errors.js";
import { clientTimeoutMs, holdBudget } from "../proxy/client-timeout.js";
import type { Exchange } from "../proxy/exchange.js";
import type { Ticket } from "./ticket.js";

export interface HoldDeadline {
  /** performance.now() past which the ticket is answered. */
  readonly deadline: number;
  /** The deadline came from the client's stated timeout or the edge's, not holdTimeout. */
  readonly clientBound: boolean;
  /** It was the edge's (limits.edgeTimeout), not the client's own. */
  readonly edgeBound: boolean;
}

export class Deadlines {
  readonly #target: string;
  readonly #limits: Config["limits"];
  readonly #edgeTimeout: number | undefined;

  constructor(target: string, limits: Config["limits"], edgeTimeout: number | undefined) {
    this.#target = target;
    this.#limits = limits;
    this.#edgeTimeout = edgeTimeout;
  }

  /** The deadline of a request about to be held. */
  of(ex: Exchange): HoldDeadline {
    let stated = clientTimeoutMs(ex.headers);
    let edge = false;
    if (
      this.#edgeTimeout !== undefined &&
      !ex.streaming &&
      (stated === undefined || this.#edgeTimeout < stated)
    ) {
      stated = this.#edgeTimeout;
      edge = true;
    }
    const limits = this.#limits;
    const budget = holdBudget(limits.holdTimeout, stated, limits.clientTimeoutMargin);
    return {
      deadline: ex.arrivedAt + budget.ms,
      clientBound: budget.clientBound,
      edgeBound: edge && budget.clientBound,
    };
  }

  /** (Re)arms the ticket's deadline timer. */
  arm(t: Ticket, onDeadline: (t: Ticket) => void, now = performance.now()): void {
    if (t.deadlineTimer) clearTimeout(t.deadlineTimer);
    t.deadlineTimer = setTimeout(
      () => {
        t.deadlineTimer = undefined;
        onDeadline(t);
      },
      Math.max(0, t.deadline - now),
    );
  }

  /**
   * Once early SSE headers are out, the client's own header timeout no longer applies; only the
   * hold timeout does.
   */
  relaxToHoldTimeout(t: Ticket, onDeadline: (t: Ticket) => void): void {
    if (!t.clientBound) return;
    t.clientBound = false;
    t.deadline = t.ex.arrivedAt + this.#limits.holdTimeout;
    this.arm(t, onDeadline);
  }

  /**
   * 503 overloaded: the target was ready the whole time, and the release cap held the request
   * (DESIGN.md "Capacity, balancing, async work and packaging"). A client-bound deadline is told
   * to come back at once, like a cold start's.
   */
  overloaded(t: Ticket, concurrency: number, maxInFlight: number, now = performance.now()): ColdfrontError {
    const seconds = Math.round((now - t.ex.arrivedAt) / 1000);
    return new ColdfrontError(
      "overloaded",
      `target '${this.#target}' is ready but was at its release capacity for ${seconds}s (release.concurrency: ${concurrency}, release.maxInFlight: ${maxInFlight}); retry later`,
      t.clientBound ? { retryAfterMs: 1000 } : undefined,
    );
  }

  /**
   * cold_start_timeout. With a known ETA (`remainingMs`), Retry-After brings the retry back so
   * that the model is expected to become ready within the retry's own hold budget (the same
   * client gets the same budget again: half of it before the expected readiness, half after): at
   * once when it is near, later when it is not, which stretches how long a cold start an SDK's
   * few retries survive (README "Long cold starts"). Without an ETA: at once for a client-stated
   * or edge deadline (rejoin the queue), the vocabulary's default otherwise.
   */
  coldStartTimeout(t: Ticket, remainingMs: number | undefined, now = performance.now()): ColdfrontError {
    const seconds = Math.round((now - t.ex.arrivedAt) / 1000);
    const budget = t.deadline - t.ex.arrivedAt;
    // Readiness is aimed at the middle of the retry's hold, not its end, so an ETA that is a
    // little late still lands inside it.
    const retryAfterMs =
      remainingMs !== undefined ? Math.max(1000, remainingMs - budget / 2) : t.clientBound ? 1000 : undefined;
    const options = retryAfterMs === undefined ? undefined : { retryAfterMs };
    const name = this.#target;
    return t.clientBound
      ? new ColdfrontError(
          "cold_start_timeout",
          `target '${name}' did not become ready within ${t.edgeBound ? "the edge proxy's timeout (limits.edgeTimeout)" : "the client's timeout"} (${seconds}s); retry to rejoin the queue`,
          options,
        )
      : new ColdfrontError(
          "cold_start_timeout",
          `target '${name}' did not become ready within ${seconds}s`,
          options,
        );
  }
}
