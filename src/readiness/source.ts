/**
 * The narrow interface every readiness source implements (DESIGN.md "Readiness sources"), so that
 * a new source is one new file. A source only observes and reports; the hold gate decides.
 */

/** What the gate tells a source about demand, so it can poll faster or start a process. */
export interface Demand {
  /** Requests held now. */
  readonly pending: number;
  /** Requests forwarded and not finished. */
  readonly inFlight: number;
}

export interface ReadinessSource {
  /** Short name for logs and /status: "probe", "process", "kubernetes", "none". */
  readonly kind: string;
  /** Ready now. A target is cold from start until its source first says ready. */
  readonly ready: boolean;
  /**
   * True once the source has an answer it trusts (an informer synced, a first probe done).
   * /readyz waits for every source to be synced or refused (admin/readiness.ts).
   */
  readonly synced: boolean;
  /**
   * Set when the source cannot get an answer and waiting will not change that: the API server
   * refused (401, 403) or does not serve (404) what it watches. The text says why (also in
   * status().lastError). The target keeps its last known readiness (cold from start), and /readyz
   * counts the source as answered (admin/readiness.ts): one target's missing RBAC must not take
   * the whole replica out of its Service. Cleared once the source gets an answer again; sources
   * that are never refused leave it out.
   */
  readonly refused?: string | undefined;
  /** Begin observing. Must not throw for an unreachable backend: that is simply "not ready". */
  start(): Promise<void>;
  /** Stop observing and release everything (timers, watches, child processes). Idempotent. */
  stop(): Promise<void>;
  /** Called on every change of ready. Returns an unsubscribe function. */
  onChange(listener: (ready: boolean) => void): () => void;
  /** Called by the gate whenever pending or in-flight changes. Must be cheap. */
  demand(d: Demand): void;
  /** Extra facts for /status (ready endpoint count, watch health, process pid, ...). */
  status(): Record<string, unknown>;
}

/**
 * Whether the target's autoscaler is paused (a KEDA ScaledObject with the paused annotations).
 * Optional per target; see readiness/scaled-object.ts.
 */
export interface PauseSource {
  readonly paused: boolean;
  readonly synced: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  onChange(listener: (paused: boolean) => void): () => void;
  status(): Record<string, unknown>;
}

/** A small helper base: listener bookkeeping that every source needs. */
export class Listeners<T> {
  #listeners = new Set<(value: T) => void>();

  add(listener: (value: T) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(value: T): void {
    for (const l of this.#listeners) l(value);
  }
}
