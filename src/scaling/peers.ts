/**
 * Demand summed over all coldfront replicas (DESIGN.md "Scaling signals"): KEDA talks to one
 * replica, which must report what every replica holds. Each replica polls its peers'
 * `GET /keda/targets/<name>?scope=local` on the admin port about every 500 ms and caches the
 * answers; totals() is synchronous and only reads that cache plus the local hub.
 *
 * Invariants:
 * - totals() never throws, never waits, and is local + the peers' last known values.
 * - An unreachable peer keeps its last value for `staleAfter` (a flapping network must not read
 *   as zero demand and scale a model in under a queue), then counts as nothing.
 * - A peer gone from discovery counts as nothing at once.
 * - Polls and discoveries never overlap themselves (a tick is skipped while one still runs),
 *   every request is bounded by a timeout, and stop() clears every timer and socket.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { FastifyBaseLogger } from "fastify";
import { Agent, request } from "undici";
import { KubeConfigProvider } from "../readiness/index.js";
import { endpointSliceDiscovery, type PeerDiscovery, staticDiscovery } from "./peer-discovery.js";
import {
  type ClusterDemand,
  type DemandTotals,
  localDemand,
  localTotals,
  type SignalHub,
} from "./signals.js";

export interface ClusterDemandOptions {
  readonly hub: SignalHub;
  /** coldfront's own (headless) Service, whose EndpointSlices list the replicas. */
  readonly peers?: { readonly namespace: string; readonly service: string };
  /** Peer admin base URLs (`http://10.0.0.7:9090`), instead of discovery. */
  readonly staticPeers?: readonly string[];
  /** For `peers`; else in-cluster or KUBECONFIG credentials. */
  readonly kubeConfig?: KubeConfig;
  /** Poll period, ms (scaler.peerInterval, 500 by default). */
  readonly interval: number;
  /** How long an unreachable peer's last values still count, ms (scaler.peerStaleAfter). */
  readonly staleAfter: number;
  /** The peers' admin port when their EndpointSlice has no port named "admin". */
  readonly adminPort: number;
  readonly log: FastifyBaseLogger;
  /** Per peer request, ms; default min(2 × interval, 1000). */
  readonly timeout?: number;
  /**
   * How often the peer list is read again, ms; default max(interval, 2000). Listing
   * EndpointSlices on every 500 ms poll would cost every replica two API calls a second for a
   * list that changes only on rollouts; between discoveries, peers are still polled each interval.
   */
  readonly discoveryInterval?: number;
}

/**
 * Builds the ClusterDemand of this replica. With neither `peers` nor `staticPeers` it is the local
 * hub alone; otherwise it starts polling at once and until stop().
 *
 * @example
 * const cluster = createClusterDemand({ hub, peers: { namespace: "serving", service: "coldfront-peers" },
 *   interval: 500, staleAfter: 30_000, adminPort: 9090, log });
 * cluster.totals("llama"); // { pending: 3, inFlight: 0 }, summed over replicas
 */
export function createClusterDemand(o: ClusterDemandOptions): ClusterDemand {
  if (!o.peers && !(o.staticPeers && o.staticPeers.length > 0)) return localDemand(o.hub);
  const peers = o.peers;
  const discovery: Promise<PeerDiscovery> = peers
    ? (async () => {
        const kubeConfig = o.kubeConfig ?? (await new KubeConfigProvider().get());
        return endpointSliceDiscovery({ ...peers, kubeConfig, adminPort: o.adminPort });
      })()
    : Promise.resolve(staticDiscovery(o.staticPeers ?? []));
  return new PeerDemand(o, discovery);
}

interface Sample {
  readonly pending: number;
  readonly inFlight: number;
  /** performance.now() of the answer. */
  readonly at: number;
}

interface Peer {
  /** Last answer per target. */
  readonly samples: Map<string, Sample>;
  /** performance.now() of the first failure since the last success; undefined while reachable. */
  failingSince: number | undefined;
}

class PeerDemand implements ClusterDemand {
  readonly #o: ClusterDemandOptions;
  readonly #log: FastifyBaseLogger;
  readonly #timeout: number;
  readonly #discoveryInterval: number;
  readonly #agent: Agent;
  readonly #stop = new AbortController();
  /** Keyed by base URL; exactly the peers of the last successful discovery. */
  readonly #peers = new Map<string, Peer>();
  #discovery: PeerDiscovery | undefined;
  #discoveryError: string | undefined;
  #lastDiscovery = Number.NEGATIVE_INFINITY;
  #discovering: Promise<void> | undefined;
  #polling: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(o: ClusterDemandOptions, discovery: Promise<PeerDiscovery>) {
    this.#o = o;
    this.#log = o.log.child({ component: "peers" });
    this.#timeout = o.timeout ?? Math.min(o.interval * 2, 1000);
    this.#discoveryInterval = o.discoveryInterval ?? Math.max(o.interval, 2000);
    // Its own pool: peer polls never queue behind upstream traffic, and keep-alive spares a TCP
    // handshake every 500 ms (the peers' fastify keeps idle sockets for 72 s).
    this.#agent = new Agent({
      keepAliveTimeout: 10_000,
      connect: { timeout: this.#timeout },
      headersTimeout: this.#timeout,
      bodyTimeout: this.#timeout,
    });
    discovery.then(
      (d) => {
        this.#discovery = d;
        this.#log.info({ peers: d.describe, interval: o.interval }, "summing demand over coldfront peers");
        this.#tick();
      },
      (err: Error) =>
        this.#log.error({ err: err.message }, "peer discovery could not start; demand is local"),
    );
    this.#timer = setInterval(() => this.#tick(), o.interval);
    this.#timer.unref();
  }

  totals(target: string): DemandTotals {
    const sum = localTotals(this.#o.hub, target);
    const fresh = performance.now() - this.#o.staleAfter;
    for (const peer of this.#peers.values()) {
      const s = peer.samples.get(target);
      if (s && s.at >= fresh) {
        sum.pending += s.pending;
        sum.inFlight += s.inFlight;
      }
    }
    return sum;
  }

  async stop(): Promise<void> {
    if (this.#stop.signal.aborted) return;
    clearInterval(this.#timer);
    this.#stop.abort();
    await Promise.allSettled([this.#discovering, this.#polling]);
    this.#peers.clear();
    await this.#agent.destroy().catch(() => {});
  }

  /** Starts what is due and not already running; never throws, never overlaps. */
  #tick(): void {
    const d = this.#discovery;
    if (!d || this.#stop.signal.aborted) return;
    if (!this.#discovering && performance.now() - this.#lastDiscovery >= this.#discoveryInterval) {
      this.#lastDiscovery = performance.now();
      this.#discovering = this.#discover(d)
        .catch((err: Error) => this.#log.error({ err: err.message }, "peer discovery failed"))
        .finally(() => {
          this.#discovering = undefined;
        });
    }
    if (!this.#polling) {
      this.#polling = this.#poll()
        .catch((err: Error) => this.#log.error({ err: err.message }, "peer poll failed"))
        .finally(() => {
          this.#polling = undefined;
        });
    }
  }

  async #discover(d: PeerDiscovery): Promise<void> {
    const signal = AbortSignal.any([this.#stop.signal, AbortSignal.timeout(Math.max(this.#timeout, 5000))]);
    let urls: string[];
    try {
      urls = await untilAborted(d.discover(signal), signal);
    } catch (err) {
      if (this.#stop.signal.aborted) return;
      // Keep the last list: an API server hiccup is no reason to forget the peers.
      const message = (err as Error).message;
      if (message !== this.#discoveryError) {
        const hint = /\b403\b|forbidden/i.test(message)
          ? "coldfront's ServiceAccount needs list on discovery.k8s.io endpointslices in this namespace"
          : undefined;
        this.#log.warn(
          { err: message, peers: d.describe, hint },
          "peer discovery failed; keeping the last known peers",
        );
      }
      this.#discoveryError = message;
      return;
    }
    if (this.#stop.signal.aborted) return;
    if (this.#discoveryError !== undefined) this.#log.info({ peers: d.describe }, "peer discovery recovered");
    this.#discoveryError = undefined;
    const next = new Set(urls);
    for (const url of this.#peers.keys()) {
      if (!next.has(url)) {
        this.#peers.delete(url);
        this.#log.info({ peer: url }, "peer left");
      }
    }
    for (const url of next) {
      if (!this.#peers.has(url)) {
        this.#peers.set(url, { samples: new Map(), failingSince: undefined });
        this.#log.info({ peer: url }, "peer joined");
      }
    }
    // A new peer is asked at once rather than on the next tick.
    if (!this.#polling) this.#tick();
  }

  async #poll(): Promise<void> {
    const targets = this.#o.hub.targets().map((t) => t.name);
    await Promise.all([...this.#peers].map(([url, peer]) => this.#pollPeer(url, peer, targets)));
    this.#expire();
  }

  async #pollPeer(url: string, peer: Peer, targets: readonly string[]): Promise<void> {
    const results = await Promise.allSettled(targets.map((t) => this.#ask(url, t)));
    if (this.#stop.signal.aborted || this.#peers.get(url) !== peer) return;
    const now = performance.now();
    let failure: string | undefined;
    results.forEach((r, i) => {
      const target = targets[i]!;
      if (r.status === "rejected") failure ??= (r.reason as Error).message;
      else if (r.value === undefined) peer.samples.delete(target);
      else peer.samples.set(target, { ...r.value, at: now });
    });
    if (failure !== undefined && peer.failingSince === undefined) {
      peer.failingSince = now;
      this.#log.warn(
        { peer: url, err: failure, staleAfterMs: this.#o.staleAfter },
        "peer unreachable; counting its last known demand until it is stale",
      );
    } else if (failure === undefined && peer.failingSince !== undefined) {
      peer.failingSince = undefined;
      this.#log.info({ peer: url }, "peer reachable again");
    }
  }

  /** One target's local counts at one peer; undefined when the peer has no such target. */
  async #ask(url: string, target: string): Promise<{ pending: number; inFlight: number } | undefined> {
    const res = await request(`${url}/keda/targets/${encodeURIComponent(target)}?scope=local`, {
      dispatcher: this.#agent,
      signal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#timeout)]),
    });
    if (res.statusCode === 404) {
      // A peer on another config (mid-rollout) does not hold this target: it adds nothing.
      await res.body.dump();
      return undefined;
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`GET /keda/targets/${target} answered ${res.statusCode}`);
    }
    const body = (await res.body.json()) as { pending?: unknown; inFlight?: unknown };
    const pending = body.pending;
    const inFlight = body.inFlight;
    if (!isCount(pending) || !isCount(inFlight)) {
      throw new Error(`GET /keda/targets/${target} answered no pending/inFlight counts`);
    }
    return { pending, inFlight };
  }

  /** Drops samples past staleAfter (totals() already ignores them; this frees them). */
  #expire(): void {
    const fresh = performance.now() - this.#o.staleAfter;
    for (const [url, peer] of this.#peers) {
      let dropped = false;
      for (const [target, s] of peer.samples) {
        if (s.at < fresh) {
          peer.samples.delete(target);
          dropped = true;
        }
      }
      if (dropped)
        this.#log.warn({ peer: url }, "peer unreachable past staleAfter; its demand no longer counts");
    }
  }
}

/** `p`, or a rejection once `signal` aborts, even if whatever `p` waits on ignores the signal. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0;
}
