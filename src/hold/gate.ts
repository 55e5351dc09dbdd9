/**
 * The gate of one target: forwards at once while the target is ready, holds while it is cold,
 * and releases the held requests in arrival order once it is ready (DESIGN.md "Request
 * lifecycle").
 *
 * Invariants (tested in test/hold/gate.test.ts, which tries to break them with aborts,
 * deadlines and releases racing each other):
 * - FIFO: held tickets are released in arrival order; a replay the upstream could not take yet
 *   goes back to the head, ahead of later arrivals.
 * - Every ticket is settled exactly once, and every held request gets an answer (or its client
 *   went away first).
 * - `pending` is the number of unsettled tickets in the queue, always: it is the queue's size,
 *   not a counter kept beside it.
 * - While anything is held, new arrivals queue behind it even if the target is ready, so no one
 *   overtakes a request that waited.
 */
import { performance } from "node:perf_hooks";
import type { FastifyBaseLogger } from "fastify";
import type { Config, TargetConfig } from "../config/schema.js";
import { ColdfrontError } from "../errors.js";
import { clientTimeoutMs, holdBudget } from "../proxy/client-timeout.js";
import type { Exchange } from "../proxy/exchange.js";
import type { Forwarder, ForwardResult } from "../proxy/forward.js";
import type { PauseSource, ReadinessSource } from "../readiness/source.js";
import type { Outcome, TargetMetrics } from "../scaling/metrics.js";
import type { TargetSignals } from "../scaling/signals.js";
import { Fifo } from "./fifo.js";
import { Ticket } from "./ticket.js";

export interface GateOptions {
  readonly target: TargetConfig;
  readonly limits: Config["limits"];
  readonly hold: Config["hold"];
  readonly release: Config["release"];
  readonly source: ReadinessSource;
  readonly pause: PauseSource | undefined;
  readonly forwarder: Forwarder;
  readonly metrics: TargetMetrics;
  readonly log: FastifyBaseLogger;
  /** Called after every change of pending or in-flight (the SignalHub's listeners). */
  readonly notify: (gate: Gate) => void;
}

export type GateState = "ready" | "cold" | "waking" | "paused";

export class Gate implements TargetSignals {
  readonly name: string;
  readonly #o: GateOptions;
  readonly #wake: ReadonlySet<string>;
  readonly #fifo = new Fifo<Ticket>();
  /** Held tickets per client key, for the per-client share of maxPending (issue 4). */
  readonly #perClient = new Map<string, number>();
  readonly #maxPerClient: number;
  #inFlight = 0;
  #replaying = 0;
  /** performance.now() before which no replay starts: backoff after a cold answer. */
  #retryAt = 0;
  #backoff = 0;
  #pumpTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the first request held in this cold period. */
  #coldSince: number | undefined;
  #lastColdStartMs: number | undefined;
  #closing = false;
  #unsubscribe: (() => void)[] = [];

  constructor(options: GateOptions) {
    this.#o = options;
    this.name = options.target.name;
    this.#wake = new Set(options.target.wakeMethods);
    this.#maxPerClient = Math.max(1, Math.floor(options.limits.maxPending * options.limits.maxClientShare));
    this.#unsubscribe.push(options.source.onChange((ready) => this.#onReadyChange(ready)));
    if (options.pause)
      this.#unsubscribe.push(options.pause.onChange((paused) => this.#onPauseChange(paused)));
  }

  get pending(): number {
    return this.#fifo.size;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get ready(): boolean {
    return this.#o.source.ready;
  }

  get state(): GateState {
    if (this.#o.source.ready) return "ready";
    if (this.#o.pause?.paused) return "paused";
    return this.#fifo.size > 0 ? "waking" : "cold";
  }

  /** Takes one request; always ends with an answer to the client or its departure. */
  handle(ex: Exchange): void {
    if (this.#closing) {
      this.#fail(ex, "shutting_down", `coldfront is shutting down; retry to reach another replica`);
      return;
    }
    const source = this.#o.source;
    // The warm path: one readiness read, one size read, one clock-free comparison.
    if (source.ready && this.#fifo.size === 0 && this.#retryAt === 0) {
      void this.#forward(ex);
      return;
    }
    if (!this.#wake.has(ex.method)) {
      // Non-inference traffic neither wakes a target nor queues behind held requests.
      if (source.ready) void this.#forward(ex);
      else
        this.#fail(
          ex,
          "target_cold",
          `target '${this.name}' is scaled to zero; ${ex.method} does not wake it`,
        );
      return;
    }
    if (!source.ready && this.#o.pause?.paused) {
      this.#fail(
        ex,
        "autoscaler_paused",
        `target '${this.name}' is paused at zero replicas; its autoscaler will not wake it`,
      );
      return;
    }
    this.#hold(ex);
  }

  status(): Record<string, unknown> {
    const now = performance.now();
    return {
      state: this.state,
      ready: this.ready,
      pending: this.pending,
      inFlight: this.#inFlight,
      replaying: this.#replaying,
      coldForMs: this.#coldSince === undefined ? null : Math.round(now - this.#coldSince),
      lastColdStartMs: this.#lastColdStartMs === undefined ? null : Math.round(this.#lastColdStartMs),
      readiness: { kind: this.#o.source.kind, synced: this.#o.source.synced, ...this.#o.source.status() },
      ...(this.#o.pause ? { autoscaler: { paused: this.#o.pause.paused, ...this.#o.pause.status() } } : {}),
    };
  }

  /** Shutdown step 1: new requests get shutting_down; held ones may still be released. */
  beginShutdown(): void {
    this.#closing = true;
  }

  /** Shutdown step 2: whatever is still held gets shutting_down, so nothing is dropped silently. */
  rejectHeld(type: "shutting_down" | "autoscaler_paused", message: string): void {
    for (const t of this.#fifo) {
      this.#dequeue(t);
      this.#settle(t, type, new ColdfrontError(type, message));
    }
    this.#changed();
  }

  close(): void {
    if (this.#pumpTimer) clearTimeout(this.#pumpTimer);
    this.#pumpTimer = undefined;
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
  }

  async #forward(ex: Exchange): Promise<void> {
    this.#inFlight++;
    this.#changed();
    let result: ForwardResult;
    try {
      result = await this.#o.forwarder.forward(ex, undefined);
    } finally {
      this.#inFlight--;
      this.#changed();
    }
    switch (result.kind) {
      case "sent":
        this.#o.metrics.outcome("forwarded");
        return;
      case "aborted":
        this.#o.metrics.outcome("client_aborted");
        return;
      case "cold":
        // Readiness said ready but the gateway has no endpoint (yet, or any more): hold rather
        // than pass a 503 on, since nothing reached the client (DESIGN.md step 6).
        this.#o.metrics.retry(result.reason);
        this.#backOff();
        if (this.#wake.has(ex.method)) this.#hold(ex);
        else this.#fail(ex, "target_cold", `target '${this.name}' has no ready endpoint`);
        return;
      case "failed":
      case "broken":
        this.#o.log.warn({ target: this.name, err: result.error.message }, "upstream failed");
        this.#o.metrics.outcome("upstream_error");
        ex.fail(
          new ColdfrontError(
            "upstream_error",
            `upstream of target '${this.name}' failed: ${result.error.message}`,
          ),
        );
    }
  }

  #hold(ex: Exchange): void {
    // A warm attempt that met a cold answer may find its client already gone.
    if (ex.closed) {
      this.#o.metrics.outcome("client_aborted");
      return;
    }
    const limits = this.#o.limits;
    if (this.#fifo.size >= limits.maxPending) {
      this.#fail(ex, "queue_full", `target '${this.name}' already holds ${limits.maxPending} requests`);
      return;
    }
    const key = ex.clientKey();
    const mine = this.#perClient.get(key) ?? 0;
    if (mine >= this.#maxPerClient) {
      this.#fail(
        ex,
        "rate_limited",
        `this client already has ${mine} requests held for target '${this.name}' (at most ${this.#maxPerClient} of ${limits.maxPending})`,
      );
      return;
    }
    const now = performance.now();
    const budget = holdBudget(limits.holdTimeout, clientTimeoutMs(ex.headers), limits.clientTimeoutMargin);
    const ticket = new Ticket(ex, key, ex.arrivedAt + budget.ms, budget.clientBound, now);
    ex.onClose(() => this.#onClientGone(ticket));
    this.#armDeadline(ticket, now);
    if (ex.streaming) this.#armKeepalive(ticket, this.#o.hold.keepaliveAfter);
    ex.forgetJson();
    this.#enqueue(ticket, "tail");
    if (!this.#o.source.ready && this.#coldSince === undefined) {
      this.#coldSince = now;
      this.#o.log.info({ target: this.name }, "holding requests for a cold target");
    }
    this.#changed();
    this.#pump();
  }

  #enqueue(t: Ticket, where: "head" | "tail"): void {
    if (where === "head") this.#fifo.unshift(t);
    else this.#fifo.push(t);
    this.#perClient.set(t.clientKey, (this.#perClient.get(t.clientKey) ?? 0) + 1);
  }

  /** Returns false when the ticket was not queued. */
  #dequeue(t: Ticket): boolean {
    if (!this.#fifo.remove(t)) return false;
    const n = (this.#perClient.get(t.clientKey) ?? 1) - 1;
    if (n <= 0) this.#perClient.delete(t.clientKey);
    else this.#perClient.set(t.clientKey, n);
    t.leaveQueue(performance.now());
    return true;
  }

  #armDeadline(t: Ticket, now: number): void {
    if (t.deadlineTimer) clearTimeout(t.deadlineTimer);
    t.deadlineTimer = setTimeout(() => this.#onDeadline(t), Math.max(0, t.deadline - now));
  }

  /**
   * Streaming requests held past keepaliveAfter get 200 and SSE headers early, then a comment
   * line every keepaliveInterval (DESIGN.md step 7).
   */
  #armKeepalive(t: Ticket, delay: number): void {
    if (t.keepaliveTimer) clearTimeout(t.keepaliveTimer);
    t.keepaliveTimer = setTimeout(() => {
      t.keepaliveTimer = undefined;
      if (t.settled || !t.linked) return;
      const comment = `waiting for ${this.name}`;
      if (!t.ex.earlyStream) {
        t.ex.startEarlyStream(comment);
        // Once headers are out, the client's own header timeout no longer applies; only the hold
        // timeout does.
        if (t.clientBound) {
          t.clientBound = false;
          t.deadline = t.ex.arrivedAt + this.#o.limits.holdTimeout;
          this.#armDeadline(t, performance.now());
        }
      } else {
        t.ex.comment(comment);
      }
      this.#armKeepalive(t, this.#o.hold.keepaliveInterval);
    }, delay);
  }

  #onDeadline(t: Ticket): void {
    t.deadlineTimer = undefined;
    if (t.settled) return;
    if (!t.linked) {
      // Replaying now: the replay's outcome decides (a cold answer then ends in a timeout).
      t.expired = true;
      return;
    }
    this.#dequeue(t);
    this.#timeout(t);
    this.#changed();
  }

  #timeout(t: Ticket): void {
    const seconds = Math.round((performance.now() - t.ex.arrivedAt) / 1000);
    const err = t.clientBound
      ? new ColdfrontError(
          "cold_start_timeout",
          `target '${this.name}' did not become ready within the client's timeout (${seconds}s); retry to rejoin the queue`,
          { retryAfter: 1 },
        )
      : new ColdfrontError(
          "cold_start_timeout",
          `target '${this.name}' did not become ready within ${seconds}s`,
        );
    this.#settle(t, "cold_start_timeout", err);
  }

  #onClientGone(t: Ticket): void {
    if (t.settled) return;
    if (!t.linked) return; // replaying: the forwarder sees the abort and reports it
    this.#dequeue(t);
    this.#settle(t, "client_aborted");
    this.#changed();
  }

  /** Settles a ticket exactly once; with an error, answers the client with it. */
  #settle(t: Ticket, outcome: Outcome, err?: ColdfrontError): void {
    if (t.settled) return;
    t.settled = true;
    t.clearTimers();
    t.ex.onClose(undefined);
    if (err) t.ex.fail(err, t.heldMs);
    this.#o.metrics.outcome(outcome);
    this.#o.metrics.held(t.heldMs / 1000);
  }

  #fail(ex: Exchange, type: Outcome & ColdfrontError["type"], message: string): void {
    this.#o.metrics.outcome(type);
    ex.fail(new ColdfrontError(type, message));
  }

  /** Releases held tickets in order while ready, at most release.concurrency at once. */
  #pump(): void {
    if (this.#pumpTimer) return;
    const limit = this.#o.release.concurrency;
    while (this.#fifo.size > 0 && this.#o.source.ready) {
      if (limit > 0 && this.#replaying >= limit) return;
      const wait = this.#retryAt - performance.now();
      if (wait > 0) {
        this.#pumpTimer = setTimeout(() => {
          this.#pumpTimer = undefined;
          this.#pump();
        }, wait);
        return;
      }
      const t = this.#fifo.peek() as Ticket;
      this.#dequeue(t);
      void this.#replay(t);
    }
    if (this.#fifo.size === 0 && this.#replaying === 0) this.#retryAt = 0;
  }

  async #replay(t: Ticket): Promise<void> {
    if (t.keepaliveTimer) clearTimeout(t.keepaliveTimer);
    t.keepaliveTimer = undefined;
    this.#replaying++;
    this.#inFlight++;
    this.#changed();
    let result: ForwardResult;
    try {
      result = await this.#o.forwarder.forward(t.ex, t.heldMs);
    } catch (err) {
      result = { kind: "failed", error: err as Error };
    }
    this.#replaying--;
    this.#inFlight--;
    switch (result.kind) {
      case "sent":
        this.#backoff = 0;
        this.#retryAt = 0;
        this.#settle(t, "replayed");
        break;
      case "aborted":
        this.#settle(t, "client_aborted");
        break;
      case "cold": {
        this.#o.metrics.retry(result.reason);
        this.#backOff();
        const now = performance.now();
        if (t.ex.closed) this.#settle(t, "client_aborted");
        else if (t.expired || now >= t.deadline) this.#timeout(t);
        else {
          // Back to the head: it arrived before everything still queued (DESIGN.md step 6).
          t.heldSince = now;
          this.#enqueue(t, "head");
          if (t.ex.streaming)
            this.#armKeepalive(
              t,
              t.ex.earlyStream ? this.#o.hold.keepaliveInterval : this.#o.hold.keepaliveAfter,
            );
        }
        break;
      }
      case "failed":
      case "broken":
        this.#o.log.warn({ target: this.name, err: result.error.message }, "upstream failed during replay");
        this.#settle(
          t,
          "upstream_error",
          new ColdfrontError(
            "upstream_error",
            `upstream of target '${this.name}' failed: ${result.error.message}`,
          ),
        );
        break;
    }
    this.#changed();
    this.#pump();
  }

  #backOff(): void {
    const r = this.#o.release;
    this.#backoff = this.#backoff === 0 ? r.retryBackoff : Math.min(r.retryBackoffMax, this.#backoff * 2);
    this.#retryAt = performance.now() + this.#backoff;
  }

  #onReadyChange(ready: boolean): void {
    if (ready) {
      if (this.#coldSince !== undefined) {
        this.#lastColdStartMs = performance.now() - this.#coldSince;
        this.#o.metrics.coldStart(this.#lastColdStartMs / 1000);
        this.#o.log.info(
          { target: this.name, coldStartMs: Math.round(this.#lastColdStartMs), held: this.pending },
          "target ready; releasing held requests",
        );
      }
      this.#coldSince = undefined;
      this.#backoff = 0;
      this.#retryAt = 0;
      if (this.#pumpTimer) clearTimeout(this.#pumpTimer);
      this.#pumpTimer = undefined;
      this.#pump();
    } else {
      this.#o.log.info({ target: this.name }, "target not ready");
      if (this.#fifo.size > 0) this.#coldSince = performance.now();
      if (this.#o.pause?.paused) this.#onPauseChange(true);
    }
    this.#changed();
  }

  #onPauseChange(paused: boolean): void {
    // Held requests would only time out while the autoscaler is paused at zero (issue 5).
    if (paused && !this.#o.source.ready && this.#fifo.size > 0) {
      this.rejectHeld(
        "autoscaler_paused",
        `target '${this.name}' is paused at zero replicas; its autoscaler will not wake it`,
      );
    }
  }

  #changed(): void {
    if (this.#fifo.size === 0 && this.#coldSince !== undefined && !this.#o.source.ready)
      this.#coldSince = undefined;
    this.#o.source.demand(this);
    this.#o.notify(this);
  }
}
