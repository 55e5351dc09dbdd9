/**
 * Prometheus metrics of DESIGN.md "Scaling signals". Gauges read the gates at scrape time, so
 * the warm path pays nothing for them, and every series exists from start at 0: a metric absent
 * at zero replicas is one KEDA never triggers on.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { SignalHub } from "./signals.js";

export const OUTCOMES = [
  "forwarded",
  "replayed",
  "cold_start_timeout",
  "queue_full",
  "target_cold",
  "autoscaler_paused",
  "rate_limited",
  "client_aborted",
  "upstream_error",
  "upstream_timeout",
  "shutting_down",
  "overloaded",
] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const RETRY_REASONS = [
  "connection_refused",
  "no_endpoints",
  "overloaded",
  "connection_dropped",
] as const;
export type RetryReason = (typeof RETRY_REASONS)[number];

/** What a gate records; one instance per target, label children resolved once. */
export interface TargetMetrics {
  outcome(outcome: Outcome): void;
  /** Seconds a request spent held, recorded once when it leaves the hold for good. */
  held(seconds: number): void;
  /** Seconds from the first held request until ready. */
  coldStart(seconds: number): void;
  retry(reason: RetryReason): void;
  /** Outcomes since start, for /status. */
  totals(): Record<Outcome, number>;
}

interface OutcomeTally {
  /** Outcomes since the last scrape, per OUTCOMES index. */
  readonly counts: number[];
  /** Outcomes since start, per OUTCOMES index. */
  readonly totals: number[];
  readonly children: { inc(value?: number): void }[];
}

export class Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<"target" | "outcome">;
  readonly #hold: Histogram<"target">;
  readonly #coldStart: Histogram<"target">;
  readonly #retries: Counter<"target" | "reason">;
  /** Outcome counts kept as plain numbers on the warm path, handed to the counter at scrape. */
  readonly #tallies: OutcomeTally[] = [];

  constructor(hub: SignalHub, heldBytes: () => number = () => 0) {
    const tallies = this.#tallies;
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    new Gauge({
      name: "coldfront_pending_requests",
      help: "Requests held now, waiting for the target to become ready (the KEDA activation signal).",
      labelNames: ["target"],
      registers,
      collect() {
        for (const t of hub.targets()) this.set({ target: t.name }, t.pending);
      },
    });
    new Gauge({
      name: "coldfront_in_flight_requests",
      help: "Requests forwarded to the target and not finished (the keep-alive signal).",
      labelNames: ["target"],
      registers,
      collect() {
        for (const t of hub.targets()) this.set({ target: t.name }, t.inFlight);
      },
    });
    new Gauge({
      name: "coldfront_held_bytes",
      help: "Bytes of request bodies being read, held or waiting to be sent (counted against limits.maxHeldBytes).",
      registers,
      collect() {
        this.set(heldBytes());
      },
    });
    new Gauge({
      name: "coldfront_release_window",
      help: "The release window now: replays that may wait for a response head at once (never above release.concurrency).",
      labelNames: ["target"],
      registers,
      collect() {
        for (const t of hub.targets()) this.set({ target: t.name }, t.releaseWindow ?? 0);
      },
    });
    new Gauge({
      name: "coldfront_replays_in_flight",
      help: "Replays of held requests started and not finished (bounded by release.maxInFlight).",
      labelNames: ["target"],
      registers,
      collect() {
        for (const t of hub.targets()) this.set({ target: t.name }, t.replaysInFlight ?? 0);
      },
    });
    new Gauge({
      name: "coldfront_cold_start_eta_seconds",
      help: "The expected duration of the target's next cold start, learned from its recent ones.",
      labelNames: ["target"],
      registers,
      collect() {
        // NaN while unknown (no cold start seen, no hold.expectedColdStart): the series exists from
        // start like every gauge, without claiming an ETA of 0.
        for (const t of hub.targets())
          this.set(
            { target: t.name },
            t.expectedColdStartMs === undefined ? Number.NaN : t.expectedColdStartMs / 1000,
          );
      },
    });
    new Gauge({
      name: "coldfront_target_ready",
      help: "1 when the target's readiness source says ready, else 0.",
      labelNames: ["target"],
      registers,
      collect() {
        for (const t of hub.targets()) this.set({ target: t.name }, t.ready ? 1 : 0);
      },
    });
    this.#requests = new Counter({
      name: "coldfront_requests_total",
      help: "Requests by how they ended.",
      labelNames: ["target", "outcome"],
      registers,
      // A labelled inc() hashes its labels; every request ends with one, so the warm path only
      // bumps a number and the scrape adds what came since the last one.
      collect() {
        for (const t of tallies) {
          for (let i = 0; i < OUTCOMES.length; i++) {
            const n = t.counts[i] as number;
            if (n > 0) {
              t.children[i]?.inc(n);
              t.counts[i] = 0;
            }
          }
        }
      },
    });
    this.#hold = new Histogram({
      name: "coldfront_hold_duration_seconds",
      help: "Time a request spent held.",
      labelNames: ["target"],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600],
      registers,
    });
    this.#coldStart = new Histogram({
      name: "coldfront_cold_start_duration_seconds",
      help: "Time from the first held request until the target was ready.",
      labelNames: ["target"],
      buckets: [1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300, 450, 600],
      registers,
    });
    this.#retries = new Counter({
      name: "coldfront_replay_retries_total",
      help: "Replays sent back to the hold queue because the upstream could not take them yet.",
      labelNames: ["target", "reason"],
      registers,
    });
  }

  forTarget(target: string): TargetMetrics {
    const tally: OutcomeTally = {
      counts: new Array<number>(OUTCOMES.length).fill(0),
      totals: new Array<number>(OUTCOMES.length).fill(0),
      children: OUTCOMES.map((o) => this.#requests.labels(target, o)),
    };
    this.#tallies.push(tally);
    const index = new Map(OUTCOMES.map((o, i) => [o, i] as const));
    const retries = new Map(RETRY_REASONS.map((r) => [r, this.#retries.labels(target, r)] as const));
    for (const c of tally.children) c.inc(0);
    for (const c of retries.values()) c.inc(0);
    // Histogram series exist from start too: increase() over a series that appears with its
    // first observation misses that observation (a pod's first cold start).
    this.#hold.zero({ target });
    this.#coldStart.zero({ target });
    const hold = this.#hold.labels(target);
    const coldStart = this.#coldStart.labels(target);
    return {
      outcome: (o) => {
        const i = index.get(o);
        if (i !== undefined) {
          tally.counts[i] = (tally.counts[i] as number) + 1;
          tally.totals[i] = (tally.totals[i] as number) + 1;
        }
      },
      totals: () =>
        Object.fromEntries(OUTCOMES.map((o, i) => [o, tally.totals[i] as number])) as Record<Outcome, number>,
      held: (s) => hold.observe(s),
      coldStart: (s) => coldStart.observe(s),
      retry: (r) => retries.get(r)?.inc(),
    };
  }
}
