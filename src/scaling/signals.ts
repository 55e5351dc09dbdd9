/**
 * The read-only view of per-target demand that every scaling signal publishes (Prometheus,
 * KEDA metrics-api, KEDA external-push). The hold gates implement it; publishers only read.
 */

export interface TargetSignals {
  readonly name: string;
  /** Held now (the KEDA activation signal). */
  readonly pending: number;
  /** Forwarded and not finished (the keep-alive signal). */
  readonly inFlight: number;
  /** The target's readiness source says ready. */
  readonly ready: boolean;
  /** The cold-start ETA, ms, where the target learns one. */
  readonly expectedColdStartMs?: number;
  /** The release window now (coldfront_release_window). */
  readonly releaseWindow?: number;
  /** Replays started and not finished (coldfront_replays_in_flight). */
  readonly replaysInFlight?: number;
}

export interface SignalHub {
  /** Every configured target, in config order. */
  targets(): readonly TargetSignals[];
  get(name: string): TargetSignals | undefined;
  /**
   * Called synchronously whenever a target's pending or in-flight count changes, so that a push
   * publisher (StreamIsActive) can answer the moment a request is held, not on the next tick.
   */
  onChange(listener: (target: TargetSignals) => void): () => void;
}

/** Demand summed over all coldfront replicas (scaling/peers.ts); local when there are no peers. */
export interface DemandTotals {
  pending: number;
  inFlight: number;
}

export interface ClusterDemand {
  /** The sum over this replica and its peers for one target. */
  totals(target: string): DemandTotals;
  stop(): Promise<void>;
}

/** This replica's own counts for one target; 0 for a target it does not know. */
export function localTotals(hub: SignalHub, target: string): DemandTotals {
  const t = hub.get(target);
  return { pending: t?.pending ?? 0, inFlight: t?.inFlight ?? 0 };
}

/** Demand of this replica alone: what KEDA sees when no peers are configured. */
export function localDemand(hub: SignalHub): ClusterDemand {
  return { totals: (target) => localTotals(hub, target), stop: async () => {} };
}
