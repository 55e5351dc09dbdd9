/**
 * The gate of one target: forwards at once while the target is ready, holds while it is cold,
 * and releases the held requests in arrival order once it is ready (DESIGN.md "Request
 * lifecycle"; README "Release after a cold start").
 *
 * Invariants (tested in test/hold/gate.test.ts and test/hold/release.test.ts, which try to break
 * them with aborts, deadlines, cold answers and releases racing each other):
 * - Strict FIFO: every exchange gets an arrival sequence number; the queue is always in that
 *   order, and a replay sent back (the gateway had no endpoint yet) is re-inserted by it, ahead of
 *   everything that arrived after it.
 * - Every ticket is settled exactly once, and every held request gets an answer (or its client
 *   went away first); at shutdown every exchange whose head is not written yet gets one too.
 * - `held` is the number of unsettled tickets in the queue, always: it is the queue's size, not
 *   a counter kept beside it. `pending` (what KEDA sees) is `held`, plus one while an explicit
 *   wake is active.
 * - While anything is queued, new arrivals queue behind it even if the target is ready, so no one
 *   overtakes a request that waited; once the queue is empty the warm path resumes, whatever
 *   replays are still running.
 * - Release is paced by starts, never by whole generations: a replay holds a slot only until its
 *   response head arrives or `release.slotTimeout` passes, whichever is first. The window of
 *   slots starts at `release.concurrency` each cold period and grows by one for every replay the
 *   upstream took (an answer, or no failure within slotTimeout), a slow start; a cold answer sets
 *   it back to `release.concurrency`.
 * - Backoff after cold answers grows once per release round, not once per answer.
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
import { ColdStartEta } from "./eta.js";
import { Fifo } from "./fifo.js";
import { Ticket } from "./ticket.js";

/** Something that acts on demand while the target is cold (the scale-subresource wake). */
export interface DemandWaker {
  update(active: boolean, ready: boolean): void;
  status(): Record<string, unknown>;
}

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
  readonly waker?: DemandWaker | undefined;
}

export type GateState = "ready" | "cold" | "waking" | "paused";

/**
 * Replays started in one turn of the event loop before the release yields (setImmediate): a
 * window grown to thousands, or release.concurrency 0, would otherwise start a whole backlog in
 * one synchronous stretch, and every warm request, stream and probe would wait it out
 * (bench/README.md, hold capacity: loop delay while 10,000 are released).
 */
const RELEASE_BATCH = 64;

export class Gate implements TargetSignals {
  readonly name: string;
  readonly #o: GateOptions;
  readonly #wake: ReadonlySet<string>;
  readonly #fifo = new Fifo<Ticket>();
  /** Held tickets per client identity, for the per-client share of maxPending. */
  readonly #perClient = new Map<string, number>();
  readonly #maxPerClient: number;
  /** Exchanges with an upstream attempt out (warm or replay), for shutdown's answers. */
  readonly #live = new Set<Exchange>();
  readonly #eta: ColdStartEta;
  readonly #edgeTimeout: number | undefined;
  #seq = 0;
  #inFlight = 0;
  /** Replays counted against the release window (until their head, or slotTimeout). */
  #slots = 0;
  /** How many replays may hold a slot at once: starts at release.concurrency, grows as they are taken. */
  #window: number;
  #replaying = 0;
  /** performance.now() before which no replay starts: backoff after a cold answer. */
  #retryAt = 0;
  #backoff = 0;
  #pumpTimer: NodeJS.Timeout | undefined;
  /** Set while the release continues in a later turn of the event loop (RELEASE_BATCH). */
  #pumpYield: NodeJS.Immediate | undefined;
  /** performance.now() of the first request held (or wake) in this cold period. */
  #coldSince: number | undefined;
  #lastColdStartMs: number | undefined;
  /** performance.now() until which an explicit wake counts as demand. */
  #wakeUntil = 0;
  #wakeTimer: NodeJS.Timeout | undefined;
  #closing = false;
  #unsubscribe: (() => void)[] = [];

  constructor(options: GateOptions) {
    this.#o = options;
    this.name = options.target.name;
    this.#wake = new Set(options.target.wakeMethods);
    this.#maxPerClient = Math.max(1, Math.floor(options.limits.maxPending * options.limits.maxClientShare));
    this.#eta = new ColdStartEta(options.target.hold?.expectedColdStart ?? options.hold.expectedColdStart);
    this.#edgeTimeout = options.target.limits?.edgeTimeout ?? options.limits.edgeTimeout;
    this.#window = options.release.concurrency;
    this.#unsubscribe.push(options.source.onChange((ready) => this.#onReadyChange(ready)));
    if (options.pause)
      this.#unsubscribe.push(options.pause.onChange((paused) => this.#onPauseChange(paused)));
  }

  /** Requests held now. */
  get held(): number {
    return this.#fifo.size;
  }

  /** What KEDA and the readiness source see as demand: held, plus one during an explicit wake. */
  get pending(): number {
    return this.#fifo.size + (this.#wakeUntil === 0 ? 0 : 1);
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
    return this.pending > 0 ? "waking" : "cold";
  }

  /** The expected cold-start duration now, ms (the ETA gauge); undefined while unknown. */
  get expectedColdStartMs(): number | undefined {
    return this.#eta.expectedMs;
  }

  /** Takes one request; always ends with an answer to the client or its departure. */
  handle(ex: Exchange): void {
    ex.seq = ++this.#seq;
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

  /**
   * Demand without a request (admin `POST /targets/:name/wake`): counts as one pending request
   * for `ms`, so every KEDA signal and the scale wake see it. A second wake extends it.
   */
  wake(ms: number = this.#o.hold.wakeHold): void {
    const now = performance.now();
    this.#wakeUntil = Math.max(this.#wakeUntil, now + ms);
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#wakeUntil = 0;
      this.#changed();
    }, this.#wakeUntil - now);
    if (!this.#o.source.ready && this.#coldSince === undefined) this.#coldSince = now;
    this.#o.log.info({ target: this.name, forMs: Math.round(this.#wakeUntil - now) }, "wake requested");
    this.#changed();
  }

  status(): Record<string, unknown> {
    const now = performance.now();
    const elapsed = this.#coldSince === undefined || this.ready ? null : now - this.#coldSince;
    const wakeLeft = this.#wakeUntil === 0 ? null : Math.max(0, Math.round(this.#wakeUntil - now));
    return {
      state: this.state,
      ready: this.ready,
      pending: this.pending,
      held: this.held,
      inFlight: this.#inFlight,
      replaying: this.#replaying,
      releaseSlots: this.#slots,
      releaseWindow: this.#window,
      backoffMs: this.#backoff,
      coldForMs: elapsed === null ? null : Math.round(elapsed),
      lastColdStartMs: this.#lastColdStartMs === undefined ? null : Math.round(this.#lastColdStartMs),
      eta: {
        expectedMs: roundOrNull(this.#eta.expectedMs),
        learned: this.#eta.learned,
        samples: this.#eta.samples.length,
        elapsedMs: elapsed === null ? null : Math.round(elapsed),
        remainingMs: elapsed === null ? null : roundOrNull(this.#eta.remainingMs(elapsed)),
      },
      recentColdStarts: this.#eta.samples.map((s) => ({
        at: new Date(s.at).toISOString(),
        ms: Math.round(s.ms),
      })),
      outcomes: this.#o.metrics.totals(),
      wake: { active: wakeLeft !== null, remainingMs: wakeLeft },
      readiness: { kind: this.#o.source.kind, synced: this.#o.source.synced, ...this.#o.source.status() },
      ...(this.#o.pause ? { autoscaler: { paused: this.#o.pause.paused, ...this.#o.pause.status() } } : {}),
      ...(this.#o.waker ? { scale: this.#o.waker.status() } : {}),
    };
  }

  /** The queue's arrival sequence numbers, head first (for tests of the FIFO invariant). */
  queuedSeqs(): number[] {
    return [...this.#fifo].map((t) => t.seq);
  }

  /** Shutdown step 1: new requests get shutting_down; held ones may still be released. */
  beginShutdown(): void {
    this.#closing = true;
  }

  /**
   * Shutdown step 2: whatever is still held, and every exchange whose upstream attempt has no
   * response head yet, gets `type`, so nothing is dropped silently or reset.
   */
  rejectHeld(type: "shutting_down" | "autoscaler_paused", message: string): void {
    for (const t of this.#fifo) {
      this.#dequeue(t);
      this.#settle(t, type, new ColdfrontError(type, message));
    }
    if (type === "shutting_down") {
      for (const ex of this.#live) {
        if (!ex.headWritten && !ex.closed) ex.abandon(new ColdfrontError(type, message));
      }
    }
    this.#changed();
  }

  close(): void {
    if (this.#pumpTimer) clearTimeout(this.#pumpTimer);
    if (this.#pumpYield) clearImmediate(this.#pumpYield);
    this.#pumpYield = undefined;
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#pumpTimer = undefined;
    this.#wakeTimer = undefined;
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
  }

  async #forward(ex: Exchange): Promise<void> {
    this.#inFlight++;
    this.#live.add(ex);
    this.#changed();
    let result: ForwardResult;
    try {
      result = await this.#o.forwarder.forward(ex);
    } finally {
      this.#inFlight--;
      this.#live.delete(ex);
      this.#changed();
    }
    if (ex.abandoned) {
      this.#outcome(ex, "shutting_down");
      return;
    }
    switch (result.kind) {
      case "sent":
        this.#outcome(ex, "forwarded");
        return;
      case "aborted":
        this.#outcome(ex, "client_aborted");
        return;
      case "cold":
        // Readiness said ready but the gateway has no endpoint (yet, or any more): hold rather
        // than pass a 503 on, since nothing reached the client (DESIGN.md step 6).
        this.#o.metrics.retry(result.reason);
        this.#backOff();
        if (this.#wake.has(ex.method)) this.#hold(ex);
        else this.#fail(ex, "target_cold", `target '${this.name}' has no ready endpoint`);
        return;
      case "timeout":
        this.#outcome(ex, "upstream_timeout");
        ex.fail(this.#headersTimeout());
        return;
      case "failed":
      case "broken":
        this.#o.log.warn({ target: this.name, err: result.error.message }, "upstream failed");
        this.#outcome(ex, "upstream_error");
        ex.fail(
          new ColdfrontError(
            "upstream_error",
            `upstream of target '${this.name}' failed: ${result.error.message}`,
          ),
        );
    }
  }

  #headersTimeout(): ColdfrontError {
    const s = Math.round((this.#o.limits.upstreamHeadersTimeout ?? 0) / 1000);
    this.#o.log.warn({ target: this.name, timeoutS: s }, "upstream sent no response head in time");
    return new ColdfrontError(
      "upstream_timeout",
      `upstream of target '${this.name}' sent no response within ${s}s (limits.upstreamHeadersTimeout)`,
    );
  }

  #hold(ex: Exchange): void {
    // A warm attempt that met a cold answer may find its client already gone.
    if (ex.closed) {
      this.#outcome(ex, "client_aborted");
      return;
    }
    const limits = this.#o.limits;
    if (this.#fifo.size >= limits.maxPending) {
      this.#fail(ex, "queue_full", `target '${this.name}' already holds ${limits.maxPending} requests`);
      return;
    }
    const mine = this.#perClient.get(ex.identity) ?? 0;
    if (mine >= this.#maxPerClient) {
      this.#fail(
        ex,
        "rate_limited",
        `this client already has ${mine} requests held for target '${this.name}' (at most ${this.#maxPerClient} of ${limits.maxPending})`,
      );
      return;
    }
    const now = performance.now();
    // An edge proxy in front cuts a non-streaming request that stays silent; a streaming one is
    // kept alive by early SSE headers (README "Long cold starts").
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
    const budget = holdBudget(limits.holdTimeout, stated, limits.clientTimeoutMargin);
    const ticket = new Ticket(ex, ex.arrivedAt + budget.ms, budget.clientBound, now);
    ticket.edgeBound = edge && budget.clientBound;
    ex.onClose(() => this.#onClientGone(ticket));
    this.#armDeadline(ticket, now);
    if (ex.streaming) this.#armKeepalive(ticket, this.#o.hold.keepaliveAfter);
    ex.forgetJson();
    const ahead = this.#enqueue(ticket);
    ex.observer?.held(ahead);
    if (!this.#o.source.ready && this.#coldSince === undefined) {
      this.#coldSince = now;
      this.#o.log.info({ target: this.name }, "holding requests for a cold target");
    }
    this.#changed();
    this.#pump();
  }

  /**
   * Inserts by arrival order: at the tail for a new arrival, further up for one sent back.
   * Returns how many are queued ahead of it.
   */
  #enqueue(t: Ticket): number {
    let ref: Ticket | undefined = this.#fifo.peek();
    let ahead = 0;
    // Fast path: a new arrival is the youngest of all.
    const tail = this.#fifo.last();
    if (tail === undefined || tail.seq < t.seq) {
      ref = undefined;
      ahead = this.#fifo.size;
    } else
      while (ref !== undefined && ref.seq < t.seq) {
        ref = ref.next;
        ahead++;
      }
    this.#fifo.insertBefore(t, ref);
    this.#perClient.set(t.ex.identity, (this.#perClient.get(t.ex.identity) ?? 0) + 1);
    return ahead;
  }

  /** Returns false when the ticket was not queued. */
  #dequeue(t: Ticket): boolean {
    if (!this.#fifo.remove(t)) return false;
    const n = (this.#perClient.get(t.ex.identity) ?? 1) - 1;
    if (n <= 0) this.#perClient.delete(t.ex.identity);
    else this.#perClient.set(t.ex.identity, n);
    t.leaveQueue(performance.now());
    return true;
  }

  #armDeadline(t: Ticket, now: number): void {
    if (t.deadlineTimer) clearTimeout(t.deadlineTimer);
    t.deadlineTimer = setTimeout(() => this.#onDeadline(t), Math.max(0, t.deadline - now));
  }

  /** Time left of this cold start by the ETA, for comments and Retry-After; undefined if none. */
  #remainingMs(now: number): number | undefined {
    if (this.#coldSince === undefined) return undefined;
    return this.#eta.remainingMs(now - this.#coldSince);
  }

  #waitingComment(now: number): string {
    const left = this.#remainingMs(now);
    if (left === undefined) return `waiting for ${this.name}`;
    return left > 0
      ? `waiting for ${this.name}, about ${Math.ceil(left / 1000)}s left`
      : `waiting for ${this.name}, taking longer than the expected ${Math.round((this.#eta.expectedMs ?? 0) / 1000)}s`;
  }

  /**
   * Streaming requests held past keepaliveAfter get 200 and SSE headers early, then a comment
   * line every keepaliveInterval (DESIGN.md step 7) with the ETA.
   */
  #armKeepalive(t: Ticket, delay: number): void {
    if (t.keepaliveTimer) clearTimeout(t.keepaliveTimer);
    t.keepaliveTimer = setTimeout(() => {
      t.keepaliveTimer = undefined;
      if (t.settled || !t.linked) return;
      const comment = this.#waitingComment(performance.now());
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

  /**
   * cold_start_timeout. With a known ETA, Retry-After brings the retry back so that the model is
   * expected to become ready within the retry's own hold budget (the same client gets the same
   * budget again: half of it before the expected readiness, half after): at once when it is near, later when it is not, which stretches how long a
   * cold start an SDK's few retries survive (README "Long cold starts"). Without an ETA: at once
   * for a client-stated or edge deadline (rejoin the queue), the vocabulary's default otherwise.
   */
  #timeout(t: Ticket): void {
    const now = performance.now();
    const seconds = Math.round((now - t.ex.arrivedAt) / 1000);
    const left = this.#remainingMs(now);
    const budget = t.deadline - t.ex.arrivedAt;
    // Readiness is aimed at the middle of the retry's hold, not its end, so an ETA that is a
    // little late still lands inside it.
    const retryAfterMs =
      left !== undefined ? Math.max(1000, left - budget / 2) : t.clientBound ? 1000 : undefined;
    const options = retryAfterMs === undefined ? undefined : { retryAfterMs };
    const err = t.clientBound
      ? new ColdfrontError(
          "cold_start_timeout",
          `target '${this.name}' did not become ready within ${t.edgeBound ? "the edge proxy's timeout (limits.edgeTimeout)" : "the client's timeout"} (${seconds}s); retry to rejoin the queue`,
          options,
        )
      : new ColdfrontError(
          "cold_start_timeout",
          `target '${this.name}' did not become ready within ${seconds}s`,
          options,
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
    this.#outcome(t.ex, outcome);
    this.#o.metrics.held(t.heldMs / 1000);
    t.ex.observer?.holdEnded(outcome, t.heldMs);
  }

  #fail(ex: Exchange, type: Outcome & ColdfrontError["type"], message: string): void {
    this.#outcome(ex, type);
    ex.fail(new ColdfrontError(type, message));
  }

  #outcome(ex: Exchange, outcome: Outcome): void {
    this.#o.metrics.outcome(outcome);
    ex.outcome = outcome;
  }

  /** Releases held tickets in order while ready, as release slots allow. */
  #pump(): void {
    if (this.#pumpTimer || this.#pumpYield) return;
    const bounded = this.#o.release.concurrency > 0;
    let released = 0;
    while (this.#fifo.size > 0 && this.#o.source.ready) {
      if (bounded && this.#slots >= this.#window) return;
      if (released === RELEASE_BATCH) {
        this.#pumpYield = setImmediate(() => {
          this.#pumpYield = undefined;
          this.#pump();
        });
        return;
      }
      released++;
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
      t.ex.observer?.holdEnded("released", t.heldMs);
      void this.#replay(t);
    }
    // Queue empty and no backoff running: the warm path takes new arrivals again.
    if (this.#fifo.size === 0 && this.#retryAt !== 0 && performance.now() >= this.#retryAt) this.#retryAt = 0;
  }

  async #replay(t: Ticket): Promise<void> {
    if (t.keepaliveTimer) clearTimeout(t.keepaliveTimer);
    t.keepaliveTimer = undefined;
    this.#replaying++;
    this.#inFlight++;
    this.#slots++;
    const ex = t.ex;
    this.#live.add(ex);
    let slotHeld = true;
    let grew = false;
    const freeSlot = (): void => {
      if (!slotHeld) return;
      slotHeld = false;
      clearTimeout(slotTimer);
      this.#slots--;
      this.#pump();
    };
    // Taken: no failure within slotTimeout (a non-streaming generation has no head yet).
    const took = (): void => {
      if (grew) return;
      grew = true;
      this.#window++;
    };
    const slotTimer = setTimeout(() => {
      took();
      freeSlot();
    }, this.#o.release.slotTimeout);
    ex.held = { heldMs: t.heldMs, coldStartMs: this.#lastColdStartMs };
    this.#changed();
    let result: ForwardResult;
    try {
      result = await this.#o.forwarder.forward(ex, freeSlot);
    } catch (err) {
      result = { kind: "failed", error: err as Error };
    }
    this.#live.delete(ex);
    this.#replaying--;
    this.#inFlight--;
    if (ex.abandoned) {
      this.#settle(t, "shutting_down");
      freeSlot();
      this.#changed();
      return;
    }
    switch (result.kind) {
      case "sent":
        this.#backoff = 0;
        this.#retryAt = 0;
        took();
        this.#settle(t, "replayed");
        break;
      case "aborted":
        this.#settle(t, "client_aborted");
        break;
      case "cold": {
        this.#o.metrics.retry(result.reason);
        this.#backOff();
        // The fresh replica (or the gateway's view of it) is not ready for more: start slow again.
        this.#window = this.#o.release.concurrency;
        const now = performance.now();
        if (ex.closed) this.#settle(t, "client_aborted");
        else if (t.expired || now >= t.deadline) this.#timeout(t);
        else {
          // Back in arrival order, ahead of everything that came after it (DESIGN.md step 6).
          t.heldSince = now;
          const ahead = this.#enqueue(t);
          ex.observer?.held(ahead);
          if (ex.streaming)
            this.#armKeepalive(
              t,
              ex.earlyStream ? this.#o.hold.keepaliveInterval : this.#o.hold.keepaliveAfter,
            );
        }
        break;
      }
      case "timeout":
        this.#settle(t, "upstream_timeout", this.#headersTimeout());
        break;
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
    // Whatever freed the slot before (the head, or slotTimeout), it is free now.
    freeSlot();
    this.#changed();
    this.#pump();
  }

  /** Once per round: cold answers that arrive while a backoff is running do not grow it again. */
  #backOff(): void {
    const now = performance.now();
    if (now < this.#retryAt) return;
    const r = this.#o.release;
    this.#backoff = this.#backoff === 0 ? r.retryBackoff : Math.min(r.retryBackoffMax, this.#backoff * 2);
    this.#retryAt = now + this.#backoff;
  }

  #onReadyChange(ready: boolean): void {
    if (ready) {
      if (this.#coldSince !== undefined) {
        this.#lastColdStartMs = performance.now() - this.#coldSince;
        this.#eta.record(this.#lastColdStartMs);
        this.#o.metrics.coldStart(this.#lastColdStartMs / 1000);
        this.#o.log.info(
          { target: this.name, coldStartMs: Math.round(this.#lastColdStartMs), held: this.held },
          "target ready; releasing held requests",
        );
      }
      this.#coldSince = undefined;
      this.#backoff = 0;
      this.#retryAt = 0;
      this.#window = this.#o.release.concurrency;
      if (this.#pumpTimer) clearTimeout(this.#pumpTimer);
      this.#pumpTimer = undefined;
      this.#pump();
    } else {
      this.#o.log.info({ target: this.name }, "target not ready");
      if (this.pending > 0) this.#coldSince = performance.now();
      if (this.#o.pause?.paused) this.#onPauseChange(true);
    }
    this.#changed();
  }

  #onPauseChange(paused: boolean): void {
    // Held requests would only time out while the autoscaler is paused at zero.
    if (paused && !this.#o.source.ready && this.#fifo.size > 0) {
      this.rejectHeld(
        "autoscaler_paused",
        `target '${this.name}' is paused at zero replicas; its autoscaler will not wake it`,
      );
    }
  }

  #changed(): void {
    const pending = this.pending;
    const ready = this.#o.source.ready;
    if (pending === 0 && this.#coldSince !== undefined && !ready) this.#coldSince = undefined;
    this.#o.source.demand(this);
    this.#o.waker?.update(pending > 0, ready);
    this.#o.notify(this);
  }
}

function roundOrNull(n: number | undefined): number | null {
  return n === undefined ? null : Math.round(n);
}
