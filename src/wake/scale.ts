/**
 * Wake without KEDA (README "Waking without KEDA", DESIGN.md "Bounds, identity and long cold
 * starts": `targets[].wake.scale`; deploy/README.md "Without KEDA"): on demand at zero, coldfront itself moves the target's Deployment from
 * 0 to 1 replica through the `scale` subresource, and does nothing else. Whatever scales 1 to N
 * and back to 0 (an HPA, KEDA, a person) keeps owning the replica count.
 *
 * Invariants:
 * - Only 1 is ever written, and only over a 0 this process has just read: the PATCH is a JSON
 *   merge patch `{"metadata":{"resourceVersion":"<read>"},"spec":{"replicas":1}}`, and a
 *   resourceVersion inside a patch is a precondition the API server checks (409 Conflict when the
 *   Deployment changed since the read). Two coldfront replicas racing therefore write once: the
 *   loser's precondition fails, it re-reads, sees 1, and stops. An HPA or a person who scaled in
 *   between is never overwritten either. (`kubectl scale --current-replicas=0 --replicas=1` is
 *   the same compare-and-swap.)
 * - Only the scale subresource: `get` and `patch` on `deployments/scale` is all the RBAC it
 *   needs (deploy/RBAC.md), never the Deployment itself.
 * - At most one wake per cold period. A cold period starts when the target is cold (at start, or
 *   ready -> not ready) and ends when it is ready; once this period's wake is done (a patch
 *   answered 2xx, or replicas already above 0 seen) nothing more is read or written until the
 *   target has been ready and gone cold again. If the replica count then returns to 0 while
 *   still cold, that is its owner's decision (e.g. a ScaledObject scaling in), not coldfront's
 *   to overrule.
 * - Nothing while warm, nothing while the ScaledObject is paused (`paused()`, DESIGN.md
 *   "Readiness sources": paused at zero), nothing without demand. A failed call (403, 409, 500, a
 *   network error, a timeout) is retried with a capped, jittered backoff while demand lasts and
 *   the target is cold; each distinct error is logged once, not once per retry.
 * - Every call is bounded by `requestTimeout` and aborted by stop().
 */
import {
  AppsV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Scale,
} from "@kubernetes/client-node";
import type { FastifyBaseLogger } from "fastify";
import { abortable, describeError } from "../readiness/informer.js";

export interface ScaleRef {
  readonly namespace: string;
  readonly kind: "Deployment";
  readonly name: string;
}

export interface ScaleWakeOptions {
  /** The target's name, for logs. */
  readonly target: string;
  readonly ref: ScaleRef;
  readonly kubeConfig: KubeConfig;
  readonly log: FastifyBaseLogger;
  /**
   * True while the target's ScaledObject is paused at zero (autoscaling.keda.sh/paused
   * annotations, src/readiness/scaled-object.ts); undefined: no ScaledObject configured. Read on
   * every update() while cold with demand, and once a second while a wake waits on it.
   */
  readonly paused?: () => boolean;
  /** Retry delay after a failed call (ms): `initial`, doubling per failure up to `max`; jittered ±20%. */
  readonly backoff?: { readonly initial: number; readonly max: number };
  /** Bound on each API call (ms). */
  readonly requestTimeout?: number;
}

export type WakePhase = "warm" | "cold" | "waking" | "woken";

const DEFAULT_BACKOFF = { initial: 500, max: 30_000 };
const DEFAULT_REQUEST_TIMEOUT = 10_000;
/** How often a wake held back by a paused ScaledObject looks again without an update(). */
const PAUSE_RECHECK_MS = 1000;
/** Recorded in the Deployment's managedFields, so `kubectl get -o yaml --show-managed-fields` says who. */
const FIELD_MANAGER = "coldfront";

class Retired extends Error {}

/**
 * Moves one Deployment from 0 to 1 replica when its target has demand and is cold.
 *
 * @example
 * ```ts
 * const waker = new ScaleWaker({ target: "llama", ref: { namespace: "serving", kind: "Deployment", name: "raw-vllm" },
 *   kubeConfig, log, paused: () => pauseSource.paused });
 * gate.onChange(() => waker.update(gate.pending > 0 || adminWakeActive, gate.ready));
 * // ... on shutdown
 * await waker.stop();
 * ```
 */
export class ScaleWaker {
  readonly #o: ScaleWakeOptions;
  readonly #api: AppsV1Api;
  readonly #backoff: { readonly initial: number; readonly max: number };
  readonly #requestTimeout: number;
  #phase: WakePhase = "cold";
  #active = false;
  #ready = false;
  #stopped = false;
  /** Bumped when a cold period ends (ready) or on stop(): an older attempt's results are dropped. */
  #period = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #pauseTimer: NodeJS.Timeout | undefined;
  /** The attempt in flight, its abort, and its promise (stop() waits for it). */
  #inFlight: AbortController | undefined;
  #running: Promise<void> | undefined;
  #delay = 0;
  #failures = 0;
  #lastError: string | undefined;
  /** The last error logged, so a retry failing the same way logs nothing new. */
  #lastLogged: string | undefined;
  #heldByPause = false;
  // For /status.
  #patches = 0;
  #conflicts = 0;
  #observedReplicas: number | undefined;
  #observedStatusReplicas: number | undefined;
  #observedAt: number | undefined;
  #patchedAt: number | undefined;
  /** A target is cold from start (DESIGN.md "Readiness sources"): the first cold period is under way. */
  #coldPeriods = 1;

  constructor(o: ScaleWakeOptions) {
    this.#o = o;
    this.#api = o.kubeConfig.makeApiClient(AppsV1Api);
    this.#backoff = o.backoff ?? DEFAULT_BACKOFF;
    this.#requestTimeout = o.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT;
  }

  /**
   * Called by the gate on every change of demand or readiness (and may be called more often:
   * unchanged input costs a few compares). `active`: something is held, or an admin wake is
   * active. `ready`: the target's readiness source says ready.
   */
  update(active: boolean, ready: boolean): void {
    this.#active = active;
    if (ready !== this.#ready) {
      this.#ready = ready;
      if (ready) this.#endPeriod();
      else this.#beginPeriod();
    }
    if (active && !ready && this.#phase === "cold") this.#evaluate();
  }

  /** For /status: what the scale subresource last said and what this waker did about it. */
  status(): Record<string, unknown> {
    const ago = (t: number | undefined) => (t === undefined ? null : Math.round(performance.now() - t));
    return {
      namespace: this.#o.ref.namespace,
      kind: this.#o.ref.kind,
      name: this.#o.ref.name,
      phase: this.#phase,
      heldByPause: this.#heldByPause,
      observedReplicas: this.#observedReplicas ?? null,
      observedStatusReplicas: this.#observedStatusReplicas ?? null,
      observedAgoMs: ago(this.#observedAt),
      patches: this.#patches,
      lastPatchAgoMs: ago(this.#patchedAt),
      conflicts: this.#conflicts,
      failures: this.#failures,
      lastError: this.#lastError ?? null,
      // Nothing in flight and no retry pending: nothing will be sent until the next update().
      inFlight: this.#inFlight !== undefined,
      retryPending: this.#retryTimer !== undefined,
      backoffMs: this.#delay,
      coldPeriods: this.#coldPeriods,
    };
  }

  /** Clears every timer and aborts the call in flight (waiting for it to settle). Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#period++;
    this.#clearTimers();
    this.#inFlight?.abort(new Retired("stopped"));
    await this.#running;
  }

  get #ctx(): Record<string, unknown> {
    const r = this.#o.ref;
    return { target: this.#o.target, namespace: r.namespace, deployment: r.name };
  }

  #beginPeriod(): void {
    if (this.#phase !== "warm") return;
    this.#phase = "cold";
    this.#coldPeriods++;
    this.#delay = 0;
    this.#failures = 0;
    this.#lastLogged = undefined;
  }

  /** Ready: this cold period is over; whatever it still had going is dropped. */
  #endPeriod(): void {
    if (this.#phase === "warm") return;
    if (this.#phase === "waking") this.#o.log.debug(this.#ctx, "target ready; wake no longer needed");
    this.#phase = "warm";
    this.#period++;
    this.#clearTimers();
    this.#heldByPause = false;
    this.#inFlight?.abort(new Retired("target ready"));
  }

  #clearTimers(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#pauseTimer) clearTimeout(this.#pauseTimer);
    this.#retryTimer = undefined;
    this.#pauseTimer = undefined;
  }

  /** Whether a call may go out now: not stopped, cold, with demand, not paused. */
  #wanted(): boolean {
    return !this.#stopped && this.#active && !this.#ready && !this.#isPaused();
  }

  #isPaused(): boolean {
    return this.#o.paused?.() === true;
  }

  /** Cold with demand and nothing under way: start, unless the ScaledObject is paused. */
  #evaluate(): void {
    if (!this.#active) this.#heldByPause = false;
    if (this.#stopped || this.#phase !== "cold" || !this.#active || this.#ready) return;
    if (this.#isPaused()) {
      if (!this.#heldByPause) {
        this.#heldByPause = true;
        this.#o.log.info(this.#ctx, "not scaling up: the target's ScaledObject is paused at zero");
      }
      // update() is not called while demand stays the same: look at the pause again by itself.
      this.#pauseTimer ??= setTimeout(() => {
        this.#pauseTimer = undefined;
        this.#evaluate();
      }, PAUSE_RECHECK_MS);
      return;
    }
    this.#heldByPause = false;
    if (this.#pauseTimer) clearTimeout(this.#pauseTimer);
    this.#pauseTimer = undefined;
    this.#phase = "waking";
    this.#start();
  }

  #start(): void {
    const period = this.#period;
    const ac = new AbortController();
    this.#inFlight = ac;
    const run = this.#attempt(period, ac.signal)
      .catch((err: unknown) => {
        if (period === this.#period) this.#failed(err);
      })
      .finally(() => {
        if (this.#inFlight === ac) this.#inFlight = undefined;
        if (this.#running === run) this.#running = undefined;
      });
    this.#running = run;
  }

  /** Read, and write 1 over a 0; on a lost race (409) read again once at once. */
  async #attempt(period: number, signal: AbortSignal): Promise<void> {
    for (let conflicts = 0; ; conflicts++) {
      const scale = await this.#call(signal, (opts) =>
        this.#api.readNamespacedDeploymentScale(
          { namespace: this.#o.ref.namespace, name: this.#o.ref.name },
          opts,
        ),
      );
      if (period !== this.#period) return;
      const replicas = this.#observe(scale);
      if (replicas > 0) {
        this.#done(
          conflicts > 0
            ? `scaled to ${replicas} by someone else meanwhile (another coldfront replica, an autoscaler or a person); leaving it`
            : `already at ${replicas} replicas; leaving the count to its owner`,
        );
        return;
      }
      if (!this.#wanted()) {
        // Demand ended or a pause appeared between the read and now: no write; the next
        // update() with demand starts over.
        this.#phase = "cold";
        if (this.#isPaused()) this.#evaluate();
        return;
      }
      const resourceVersion = scale.metadata?.resourceVersion;
      // Never a write without its precondition: it is what makes the write safe (top of file).
      if (!resourceVersion) throw new Error("the Scale has no metadata.resourceVersion; not writing");
      try {
        const after = await this.#call(signal, (opts) =>
          this.#api.patchNamespacedDeploymentScale(
            {
              namespace: this.#o.ref.namespace,
              name: this.#o.ref.name,
              body: { metadata: { resourceVersion }, spec: { replicas: 1 } },
              fieldManager: FIELD_MANAGER,
            },
            // client-node picks application/json-patch+json by default; the body is a merge patch.
            setHeaderOptions("Content-Type", PatchStrategy.MergePatch, opts),
          ),
        );
        if (period !== this.#period) return;
        this.#observe(after);
        this.#patches++;
        this.#patchedAt = performance.now();
        this.#done("scaled from 0 to 1 replica");
        return;
      } catch (err) {
        if (period !== this.#period || !isConflict(err)) throw err;
        this.#conflicts++;
        // The expected loss of a race with another coldfront replica (or a write by an
        // autoscaler): read again at once, once; a second conflict in a row backs off.
        if (conflicts > 0) throw err;
        this.#o.log.info(
          { ...this.#ctx, resourceVersion },
          "the Deployment changed since it was read (409 Conflict); reading it again",
        );
      }
    }
  }

  /** One API call bounded by requestTimeout and aborted by stop() or the end of the cold period. */
  async #call<T>(signal: AbortSignal, fn: (opts: ReturnType<typeof abortable>) => Promise<T>): Promise<T> {
    const timeout = AbortSignal.timeout(this.#requestTimeout);
    try {
      return await fn(abortable(AbortSignal.any([signal, timeout])));
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (timeout.aborted) throw new Error(`no answer from the API server within ${this.#requestTimeout} ms`);
      throw err;
    }
  }

  #observe(scale: V1Scale): number {
    // ScaleSpec.replicas is omitempty: a Scale at 0 carries no spec.replicas.
    const replicas = scale.spec?.replicas ?? 0;
    this.#observedReplicas = replicas;
    this.#observedStatusReplicas = scale.status?.replicas;
    this.#observedAt = performance.now();
    return replicas;
  }

  #done(message: string): void {
    this.#phase = "woken";
    const recovered = this.#failures > 0 ? { afterFailures: this.#failures } : {};
    this.#failures = 0;
    this.#delay = 0;
    this.#lastError = undefined;
    this.#lastLogged = undefined;
    this.#o.log.info(
      { ...this.#ctx, replicas: this.#observedReplicas, patches: this.#patches, ...recovered },
      message,
    );
  }

  #failed(err: unknown): void {
    if (err instanceof Retired || this.#stopped) {
      if (this.#phase === "waking") this.#phase = "cold";
      return;
    }
    this.#failures++;
    const b = this.#backoff;
    this.#delay = this.#delay === 0 ? b.initial : Math.min(b.max, this.#delay * 2);
    // Jitter, so that several coldfront replicas failing together do not retry together.
    const retryInMs = Math.round(this.#delay * (0.8 + Math.random() * 0.4));
    const message = describeError(err);
    this.#lastError = message;
    if (message !== this.#lastLogged) {
      this.#lastLogged = message;
      this.#o.log.warn(
        { ...this.#ctx, err: message, retryInMs, failures: this.#failures },
        `could not scale the Deployment from 0 to 1; retrying while requests wait${hint(err)}`,
      );
    }
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#phase !== "waking") return;
      // Demand gone or paused meanwhile: stop retrying; the next demand starts over.
      if (!this.#wanted()) {
        this.#phase = "cold";
        if (this.#active && !this.#ready) this.#evaluate();
        return;
      }
      this.#start();
    }, retryInMs);
  }
}

function statusCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

function isConflict(err: unknown): boolean {
  return statusCode(err) === 409;
}

function hint(err: unknown): string {
  const code = statusCode(err);
  if (code === 401 || code === 403)
    return " (check the RBAC rules in deploy/RBAC.md: get and patch on deployments/scale)";
  if (code === 404) return " (no such Deployment: check targets[].wake.scale)";
  return "";
}
