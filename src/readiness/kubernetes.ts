/**
 * Ready when the target's Service has a ready endpoint (DESIGN.md "Readiness sources":
 * kubernetes), known at once from an informer over its EndpointSlices: those labelled
 * `kubernetes.io/service-name=<service>` in `<namespace>`. A Service may have several slices
 * (more than 100 endpoints, several address families, several port sets); any ready endpoint of
 * any of them makes the target ready. The informer survives drops, 410 Gone and silent watches
 * (readiness/informer.ts); the credentials come from the caller (in-cluster or KUBECONFIG).
 *
 * While the informer restarts, the last known readiness stands: a dropped watch says nothing
 * about the Service, and a target that flipped cold for every reconnect would hold requests it
 * could forward. The fresh list then replaces every slice known before, so a slice deleted
 * during the gap cannot leave the target ready.
 */
import {
  DiscoveryV1Api,
  type KubeConfig,
  type KubernetesListObject,
  type V1Endpoint,
  type V1EndpointSlice,
} from "@kubernetes/client-node";
import type { FastifyBaseLogger } from "fastify";
import { abortable, defaultTuning, type InformerTuning, ResilientInformer } from "./informer.js";
import { type Demand, Listeners, type ReadinessSource } from "./source.js";

export interface KubernetesReadinessConfig {
  readonly namespace: string;
  readonly service: string;
}

export class KubernetesSource implements ReadinessSource {
  readonly kind: string = "kubernetes";
  readonly #target: string;
  readonly #c: KubernetesReadinessConfig;
  readonly #log: FastifyBaseLogger;
  readonly #listeners = new Listeners<boolean>();
  readonly #informer: ResilientInformer<V1EndpointSlice>;
  /** The Service's slices by name, as the current informer run last reported them. */
  #slices = new Map<string, V1EndpointSlice>();
  #ready = false;
  #readyEndpoints = 0;

  /** `tuning` is for tests (a watchdog of a few hundred ms); production uses the defaults. */
  constructor(
    target: string,
    config: KubernetesReadinessConfig,
    kubeConfig: KubeConfig,
    log: FastifyBaseLogger,
    tuning: Partial<InformerTuning> = {},
  ) {
    this.#target = target;
    this.#c = config;
    this.#log = log;
    const api = kubeConfig.makeApiClient(DiscoveryV1Api);
    const labelSelector = `kubernetes.io/service-name=${config.service}`;
    this.#informer = new ResilientInformer<V1EndpointSlice>({
      describe: `EndpointSlices of service ${config.namespace}/${config.service}`,
      kubeConfig,
      path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(config.namespace)}/endpointslices`,
      labelSelector,
      // No resourceVersion: a consistent read, so a re-list after a gap is never older than what
      // the last watch already showed (a "0" list may come from a lagging watch cache).
      list: (signal) =>
        api.listNamespacedEndpointSlice(
          { namespace: config.namespace, labelSelector },
          abortable(signal),
        ) as Promise<KubernetesListObject<V1EndpointSlice>>,
      tuning: { ...defaultTuning, ...tuning },
      log,
      logContext: { target, namespace: config.namespace, service: config.service },
      handlers: {
        replace: (items) => {
          this.#slices = new Map(items.map((s) => [s.metadata?.name ?? "", s]));
          this.#update();
        },
        upsert: (slice) => {
          this.#slices.set(slice.metadata?.name ?? "", slice);
          this.#update();
        },
        remove: (slice) => {
          this.#slices.delete(slice.metadata?.name ?? "");
          this.#update();
        },
      },
    });
  }

  get ready(): boolean {
    return this.#ready;
  }

  get synced(): boolean {
    return this.#informer.synced;
  }

  /** The API server refused the list or watch (401, 403, 404) and no list has worked since. */
  get refused(): string | undefined {
    return this.#informer.rejection?.error;
  }

  start(): Promise<void> {
    return this.#informer.start();
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }

  onChange(listener: (ready: boolean) => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Demand changes nothing: the watch already reports at once. */
  demand(_d: Demand): void {}

  status(): Record<string, unknown> {
    return {
      namespace: this.#c.namespace,
      service: this.#c.service,
      slices: this.#slices.size,
      readyEndpoints: this.#readyEndpoints,
      ...this.#informer.status(),
    };
  }

  /** Recomputes readiness from all slices; tells listeners only when it flips. */
  #update(): void {
    this.#readyEndpoints = countReadyEndpoints(this.#slices.values());
    const ready = this.#readyEndpoints > 0;
    if (ready === this.#ready) return;
    this.#ready = ready;
    this.#log.info(
      {
        target: this.#target,
        namespace: this.#c.namespace,
        service: this.#c.service,
        ready,
        readyEndpoints: this.#readyEndpoints,
      },
      ready ? "service has a ready endpoint" : "service has no ready endpoint",
    );
    this.#listeners.emit(ready);
  }
}

/**
 * An endpoint serves traffic when it has an address and its `ready` condition is true or unset:
 * the EndpointSlice API says a nil `ready` "should be interpreted as ready" (consumers must not
 * wait for a condition an older controller never sets). Terminating endpoints have ready false.
 */
export function endpointReady(ep: V1Endpoint): boolean {
  return ep.conditions?.ready !== false && (ep.addresses?.length ?? 0) > 0;
}

/**
 * Ready endpoints over all slices, each counted once: the same Pod appears in the IPv4 and the
 * IPv6 slice of a dual-stack Service, and in one slice per port set, so endpoints are told apart
 * by the object they point at, else by their addresses.
 */
export function countReadyEndpoints(slices: Iterable<V1EndpointSlice>): number {
  const seen = new Set<string>();
  for (const slice of slices) {
    for (const ep of slice.endpoints ?? []) {
      if (!endpointReady(ep)) continue;
      const ref = ep.targetRef;
      seen.add(
        ref?.name
          ? `${ref.kind ?? ""}/${ref.namespace ?? ""}/${ref.name}`
          : `${slice.addressType}/${[...ep.addresses].sort().join(",")}`,
      );
    }
  }
  return seen.size;
}
