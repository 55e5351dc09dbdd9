/**
 * The gate of one target: forwards at once while the target is ready, holds while it is cold,
 * and releases the held requests in arrival order once it is ready (DESIGN.md "Request
 * lifecycle"; README "Release after a cold start"). It orders and settles tickets; who may be
 * held (admission.ts), until when (deadlines.ts), the early SSE of a held stream (keepalive.ts),
 * the cold period and its ETA (cold-period.ts) and the pace of the release (release-pacer.ts)
 * are each a module of their own.
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
 * - Release is paced by the pacer (release-pacer.ts), whose one sentence of contract is: never
 *   more than `release.concurrency` replays without a response head, never more than
 *   `release.maxInFlight` unfinished. The gate starts a replay only when it says `canStart()`.
 * - A replay goes back into the queue, at its arrival position, only while nothing of the
 *   upstream's answer reached the client (coldfront's own early SSE head is not that answer);
 *   for an overload answer or a connection dropped before its head at most `release.retries`
 *   times.
 * - Backoff after cold answers grows once per release round, not once per answer.
 */
import { performance } from "node:perf_hooks";
import type { FastifyBaseLogger } from "fastify";
import type { Config, TargetConfig } from "../config/schema.js";
import { ColdfrontError } from "../errors.js";
import type { Exchange } from "../proxy/exchange.js";
import type { Forwarder, ForwardResult } from "../proxy/forward.js";
import type { PauseSource, ReadinessSource } from "../readiness/source.js";
import type { Outcome, TargetMetrics } from "../scaling/metrics.js";
import type { TargetSignals } from "../scaling/signals.js";
import { Admission } from "./admission.js";
import { ColdPeriod } from "./cold-period.js";
import { Deadlines } from "./deadlines.js";
import { Keepalive } from "./keepalive.js";
import { HoldQueue } from "./queue.js";
import { RELEASE_BATCH, ReleasePacer, type ReleaseSlot } from "./release-pacer.js";
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

export class Gate implements TargetSignals {
  readonly name: string;
  readonly #o: GateOptions;
  readonly #wake: ReadonlySet<string>;
  readonly #fifo = new HoldQueue<Ticket>();
  readonly #admission: Admission;
  readonly #deadlines: Deadlines;
  readonly #keepalive: Keepalive;
  readonly #cold: ColdPeriod;
  readonly #pacer: ReleasePacer;
  /** Exchanges with an upstream attempt out (warm or replay), for shutdown's answers. */
  readonly #live = new Set<Exchange>();
  #seq = 0;
  #inFlight = 0;
  /** Counts the target's turns to not ready: a ticket held while ready, with none since, was held by capacity. */
  #coldEpoch = 0;
  /** performance.now() until which an explicit wake counts as demand. */
  #wakeUntil = 0;
  #wakeTimer: NodeJS.Timeout | undefined;
  #closing = false;
  #unsubscribe: (() => void)[] = [];

  constructor(options: GateOptions) {
    this.#o = options;
    this.name = options.target.name;
    this.#wake = new Set(options.target.wakeMethods);
    this.#admission = new Admission(this.name, options.limits);
    this.#deadlines = new Deadlines(
      this.name,
      options.limits,
      options.target.limits?.edgeTimeout ?? options.limits.edgeTimeout,
    );
    this.#cold = new ColdPeriod(
      options.target.hold?.expectedColdStart ?? options.hold.expectedColdStart,
      options.limits.holdTimeout,
    );
    this.#keepalive = new Keepalive(
      options.hold,
      () => this.#cold.waitingComment(this.name),
      (t) => this.#deadlines.relaxToHoldTimeout(t, this.#onDeadline),
    );
    this.#pacer = new ReleasePacer(options.release, () => this.#pump());
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

  /** The release window now (coldfront_release_window). */
  get releaseWindow(): number {
    return this.#pacer.window;
  }

  /** Replays started and not finished (coldfront_replays_in_flight). */
  get replaysInFlight(): number {
    return this.#pacer.inFlight;
  }

  get state(): GateState {
    if (this.#o.source.ready) return "ready";
    if (this.#o.pause?.paused) return "paused";
    return this.pending > 0 ? "waking" : "cold";
  }

  /** The expected cold-start duration now, ms (the ETA gauge); undefined while unknown. */
  get expectedColdStartMs(): number | undefined {
    return this.#cold.eta.expectedMs;
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
    if (source.ready && this.#fifo.size === 0 && !this.#pacer.backingOff) {
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
    if (!this.#o.source.ready) this.#cold.begin(now);
    this.#o.log.info({ target: this.name, forMs: Math.round(this.#wakeUntil - now) }, "wake requested");
    this.#changed();
  }

  status(): Record<string, unknown> {
    const now = performance.now();
    const elapsed = this.ready ? null : (this.#cold.elapsedMs(now) ?? null);
    const eta = this.#cold.eta;
    const wakeLeft = this.#wakeUntil === 0 ? null : Math.max(0, Math.round(this.#wakeUntil - now));
    return {
      state: this.state,
      ready: this.ready,
      pending: this.pending,
      held: this.held,
      inFlight: this.#inFlight,
      replaying: this.#pacer.inFlight,
      releaseSlots: this.#pacer.slots,
      releaseWindow: this.#pacer.window,
      release: {
        window: this.#pacer.window,
        cap: this.#o.release.concurrency,
        preHead: this.#pacer.slots,
        inFlight: this.#pacer.inFlight,
        maxInFlight: this.#o.release.maxInFlight,
      },
      backoffMs: this.#pacer.backoffMs,
      coldForMs: elapsed === null ? null : Math.round(elapsed),
      lastColdStartMs: roundOrNull(this.#cold.lastMs),
      eta: {
        expectedMs: roundOrNull(eta.expectedMs),
        learned: eta.learned,
        samples: eta.samples.length,
        elapsedMs: elapsed === null ? null : Math.round(elapsed),
        remainingMs: elapsed === null ? null : roundOrNull(eta.remainingMs(elapsed)),
      },
      recentColdStarts: eta.samples.map((s) => ({
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
    return this.#fifo.ordered().map((t) => t.seq);
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
    for (const t of this.#fifo.ordered()) {
      this.#dequeue(t);
      this.#settle(t, type, new ColdfrontError(type, message));
    }
    if (type === "shutting_down") {
      // An early-streamed held request has coldfront's own head out, not the upstream's: it gets
      // its shutting_down event too.
      for (const ex of this.#live) {
        if (!ex.upstreamAnswered && !ex.closed) ex.abandon(new ColdfrontError(type, message));
      }
    }
    this.#changed();
  }

  close(): void {
    this.#pacer.close();
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
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
        this.#pacer.backOff();
        if (this.#wake.has(ex.method)) this.#hold(ex, true);
        else this.#fail(ex, "target_cold", `target '${this.name}' has no ready endpoint`);
        return;
      case "timeout":
        this.#outcome(ex, "upstream_timeout");
        ex.fail(this.#headersTimeout());
        return;
      case "overloaded": // only replays look for overload signals
      case "failed":
      case "dropped":
      case "broken":
        this.#o.log.warn(
          { target: this.name, err: result.kind === "overloaded" ? "overloaded" : result.error.message },
          "upstream failed",
        );
        this.#outcome(ex, "upstream_error");
        ex.fail(
          new ColdfrontError(
            "upstream_error",
            `upstream of target '${this.name}' failed: ${result.kind === "overloaded" ? "overloaded" : result.error.message}`,
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

  /** `cold`: the request met a cold answer on the warm path (a cold start, not capacity). */
  #hold(ex: Exchange, cold = false): void {
    // A warm attempt that met a cold answer may find its client already gone.
    if (ex.closed) {
      this.#outcome(ex, "client_aborted");
      return;
    }
    const refused = this.#admission.refuse(ex.identity, this.#fifo.size);
    if (refused !== undefined) {
      this.#fail(ex, refused.type, refused.message);
      return;
    }
    const now = performance.now();
    const d = this.#deadlines.of(ex);
    const ticket = new Ticket(ex, d.deadline, d.clientBound, now);
    ticket.edgeBound = d.edgeBound;
    ticket.readyEpoch = this.#o.source.ready && !cold ? this.#coldEpoch : -1;
    ex.onClose(() => this.#onClientGone(ticket));
    this.#deadlines.arm(ticket, this.#onDeadline, now);
    if (ex.streaming) this.#keepalive.arm(ticket);
    ex.forgetJson();
    const ahead = this.#enqueue(ticket);
    ex.observer?.held(ahead);
    if (!this.#o.source.ready && this.#cold.begin(now))
      this.#o.log.info({ target: this.name }, "holding requests for a cold target");
    this.#changed();
    this.#pump();
  }

  /** Inserts by arrival order. Returns how many are queued ahead of it (-1: not counted). */
  #enqueue(t: Ticket): number {
    const ahead = this.#fifo.insert(t, t.ex.observer !== undefined);
    this.#admission.add(t.ex.identity);
    return ahead;
  }

  /** Returns false when the ticket was not queued. */
  #dequeue(t: Ticket): boolean {
    if (!this.#fifo.remove(t)) return false;
    this.#admission.remove(t.ex.identity);
    t.leaveQueue(performance.now());
    return true;
  }

  readonly #onDeadline = (t: Ticket): void => {
    if (t.settled) return;
    if (!t.linked) {
      // Replaying now: the replay's outcome decides (a cold answer then ends in a timeout).
      t.expired = true;
      return;
    }
    this.#dequeue(t);
    this.#timeout(t);
    this.#changed();
  };

  /**
   * The deadline passed: 503 overloaded when only capacity held it (the target was ready the
   * whole time it waited), else cold_start_timeout.
   */
  #timeout(t: Ticket): void {
    const now = performance.now();
    if (t.readyEpoch === this.#coldEpoch && this.#o.source.ready) {
      const r = this.#o.release;
      this.#settle(t, "overloaded", this.#deadlines.overloaded(t, r.concurrency, r.maxInFlight, now));
      return;
    }
    this.#settle(
      t,
      "cold_start_timeout",
      this.#deadlines.coldStartTimeout(t, this.#cold.remainingMs(now), now),
    );
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
    const pacer = this.#pacer;
    if (pacer.scheduled) return;
    let released = 0;
    while (this.#fifo.size > 0 && this.#o.source.ready) {
      if (!pacer.canStart()) return;
      if (released === RELEASE_BATCH) {
        pacer.later();
        return;
      }
      released++;
      const wait = pacer.waitMs();
      if (wait > 0) {
        pacer.later(wait);
        return;
      }
      const t = this.#fifo.peek() as Ticket;
      this.#dequeue(t);
      t.ex.observer?.holdEnded("released", t.heldMs);
      void this.#replay(t);
    }
    // Queue empty and no backoff running: the warm path takes new arrivals again.
    if (this.#fifo.size === 0) pacer.settleIfIdle();
  }

  async #replay(t: Ticket): Promise<void> {
    this.#keepalive.stop(t);
    this.#inFlight++;
    const slot = this.#pacer.start();
    const ex = t.ex;
    this.#live.add(ex);
    ex.held = { heldMs: t.heldMs, coldStartMs: this.#cold.lastMs };
    this.#changed();
    let result: ForwardResult;
    try {
      result = await this.#o.forwarder.forward(ex, slot.head);
    } catch (err) {
      result = { kind: "failed", error: err as Error };
    }
    this.#live.delete(ex);
    this.#inFlight--;
    if (ex.abandoned) this.#settle(t, "shutting_down");
    else this.#replayed(t, result, slot);
    // Whatever freed the slot before (the head, or slotTimeout), it is free now.
    slot.end();
    this.#changed();
    this.#pump();
  }

  /** Acts on a replay's result before its slot is given back, so no replacement starts first. */
  #replayed(t: Ticket, result: ForwardResult, slot: ReleaseSlot): void {
    const ex = t.ex;
    switch (result.kind) {
      case "sent":
        this.#pacer.answered();
        slot.taken();
        this.#settle(t, "replayed");
        return;
      case "aborted":
        this.#settle(t, "client_aborted");
        return;
      case "cold":
        this.#o.metrics.retry(result.reason);
        this.#pacer.coldAnswer();
        // A cold answer means a cold start, whatever readiness said.
        t.readyEpoch = -1;
        this.#putBack(t);
        return;
      case "overloaded":
      case "dropped": {
        this.#o.metrics.retry(result.kind === "overloaded" ? "overloaded" : "connection_dropped");
        slot.overload();
        const max = this.#o.release.retries;
        if (ex.closed) this.#settle(t, "client_aborted");
        else if (max > 0 && ++t.retries > max) {
          const what =
            result.kind === "overloaded"
              ? "answered overloaded"
              : `dropped the connection before answering (${result.error.message})`;
          this.#o.log.warn({ target: this.name, tries: t.retries }, "upstream overloaded on every try");
          this.#settle(
            t,
            "upstream_error",
            new ColdfrontError(
              "upstream_error",
              `upstream of target '${this.name}' ${what} on ${t.retries} tries (release.retries: ${max})`,
              { retryable: true },
            ),
          );
        } else this.#putBack(t);
        return;
      }
      case "timeout":
        this.#settle(t, "upstream_timeout", this.#headersTimeout());
        return;
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
    }
  }

  /** Back in arrival order, ahead of everything that came after it (DESIGN.md step 6). */
  #putBack(t: Ticket): void {
    const ex = t.ex;
    const now = performance.now();
    if (ex.closed) this.#settle(t, "client_aborted");
    else if (t.expired || now >= t.deadline) this.#timeout(t);
    else {
      t.heldSince = now;
      const ahead = this.#enqueue(t);
      ex.observer?.held(ahead);
      if (ex.streaming) this.#keepalive.arm(t);
    }
  }

  #onReadyChange(ready: boolean): void {
    if (ready) {
      const coldStartMs = this.#cold.end();
      if (coldStartMs !== undefined) {
        this.#o.metrics.coldStart(coldStartMs / 1000);
        this.#o.log.info(
          { target: this.name, coldStartMs: Math.round(coldStartMs), held: this.held },
          "target ready; releasing held requests",
        );
      }
      this.#pacer.reset();
      this.#pump();
    } else {
      this.#coldEpoch++;
      this.#o.log.info({ target: this.name }, "target not ready");
      if (this.pending > 0) this.#cold.restart();
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
    if (pending === 0 && !ready) this.#cold.idle();
    this.#o.source.demand(this);
    this.#o.waker?.update(pending > 0, ready);
    this.#o.notify(this);
  }
}

function roundOrNull(n: number | undefined): number | null {
  return n === undefined ? null : Math.round(n);
}
