/**
 * Whether a target's KEDA ScaledObject is paused (DESIGN.md "Readiness sources": "Paused at zero"), from
 * an informer over that one object (`fieldSelector=metadata.name=<name>`). The gate combines it
 * with readiness: paused and no ready endpoint is "paused at zero", where holding a request
 * would only end in a timeout, so it answers 503 autoscaler_paused at once.
 *
 * Paused follows KEDA's own reading of its annotations (ScaledObject.NeedToBePausedByAnnotation):
 * `autoscaling.keda.sh/paused-replicas`, when present, wins and pauses at that count, so only
 * "0" is paused at zero (at 1, KEDA brings a replica up and holding is right);
 * otherwise `autoscaling.keda.sh/paused` pauses unless it parses as false (Go's ParseBool;
 * KEDA treats a value it cannot parse as true). A ScaledObject that does not exist pauses
 * nothing.
 *
 * KEDA is optional to coldfront, so its absence is an answer, not an outage: when the list is
 * answered 404 (the CRD keda.sh/v1alpha1 scaledobjects is not installed) the target counts as not
 * paused and the source as synced, with one warning; the informer keeps asking at its slow refusal
 * pace (readiness/informer.ts), so installing KEDA later is seen within about 30 s. A 403 (no
 * RBAC for scaledobjects) leaves the last known state (not paused, from start) and shows in
 * status().lastError; either way a pause source never holds /readyz (admin/readiness.ts).
 */
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from "@kubernetes/client-node";
import type { FastifyBaseLogger } from "fastify";
import { abortable, defaultTuning, type InformerTuning, ResilientInformer } from "./informer.js";
import { Listeners, type PauseSource } from "./source.js";

export interface ScaledObjectRef {
  readonly namespace: string;
  readonly name: string;
}

export const PAUSED = "autoscaling.keda.sh/paused";
export const PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas";

/** Go's strconv.ParseBool false values: anything else KEDA reads as "pause". */
const FALSE = new Set(["0", "f", "F", "false", "FALSE", "False"]);

/** Paused at zero replicas, by the annotations of a ScaledObject (see the top of this file). */
export function pausedAtZero(annotations: Readonly<Record<string, string>> | undefined): boolean {
  if (!annotations) return false;
  const replicas = annotations[PAUSED_REPLICAS];
  if (replicas !== undefined) return /^[+-]?\d+$/.test(replicas) && Number(replicas) === 0;
  const paused = annotations[PAUSED];
  return paused !== undefined && !FALSE.has(paused);
}

export class ScaledObjectPauseSource implements PauseSource {
  readonly #target: string;
  readonly #ref: ScaledObjectRef;
  readonly #log: FastifyBaseLogger;
  readonly #listeners = new Listeners<boolean>();
  readonly #informer: ResilientInformer<KubernetesObject>;
  #object: KubernetesObject | undefined;
  #paused = false;
  /** Whether "missing" was already logged, so a re-list does not repeat the warning. */
  #warnedMissing = false;

  /** `tuning` is for tests (a watchdog of a few hundred ms); production uses the defaults. */
  constructor(
    target: string,
    ref: ScaledObjectRef,
    kubeConfig: KubeConfig,
    log: FastifyBaseLogger,
    tuning: Partial<InformerTuning> = {},
  ) {
    this.#target = target;
    this.#ref = ref;
    this.#log = log;
    const api = kubeConfig.makeApiClient(CustomObjectsApi);
    const fieldSelector = `metadata.name=${ref.name}`;
    const mine = (o: KubernetesObject) => o.metadata?.name === ref.name;
    this.#informer = new ResilientInformer<KubernetesObject>({
      describe: `ScaledObject ${ref.namespace}/${ref.name}`,
      kubeConfig,
      path: `/apis/keda.sh/v1alpha1/namespaces/${encodeURIComponent(ref.namespace)}/scaledobjects`,
      fieldSelector,
      list: (signal) =>
        api.listNamespacedCustomObject(
          {
            group: "keda.sh",
            version: "v1alpha1",
            namespace: ref.namespace,
            plural: "scaledobjects",
            fieldSelector,
          },
          abortable(signal),
        ) as Promise<KubernetesListObject<KubernetesObject>>,
      tuning: { ...defaultTuning, ...tuning },
      log,
      logContext: { target, namespace: ref.namespace, scaledObject: ref.name },
      whileRefused: "the target counts as not paused",
      handlers: {
        replace: (items) => this.#update(items.find(mine)),
        upsert: (o) => {
          if (mine(o)) this.#update(o);
        },
        remove: (o) => {
          if (mine(o)) this.#update(undefined);
        },
      },
    });
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Listed once, or told the CRD does not exist: either way, known not to be paused. */
  get synced(): boolean {
    return this.#informer.synced || this.#informer.rejection?.code === 404;
  }

  start(): Promise<void> {
    return this.#informer.start();
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }

  onChange(listener: (paused: boolean) => void): () => void {
    return this.#listeners.add(listener);
  }

  status(): Record<string, unknown> {
    const s = this.#informer.status();
    return {
      namespace: this.#ref.namespace,
      name: this.#ref.name,
      paused: this.#paused,
      found: this.#object !== undefined,
      watch: s.watch,
      restarts: s.restarts,
      lastError: s.lastError,
      rejected: s.rejected,
    };
  }

  #update(object: KubernetesObject | undefined): void {
    this.#object = object;
    const ctx = { target: this.#target, namespace: this.#ref.namespace, scaledObject: this.#ref.name };
    // A missing CRD is not warned about here: the informer has just said so, with what it means.
    if (!object && !this.#warnedMissing && this.#informer.rejection?.code !== 404) {
      this.#warnedMissing = true;
      this.#log.warn(ctx, "ScaledObject not found; treating the target's autoscaler as not paused");
    } else if (object) this.#warnedMissing = false;
    const paused = pausedAtZero(object?.metadata?.annotations);
    if (paused === this.#paused) return;
    this.#paused = paused;
    this.#log.info({ ...ctx, paused }, paused ? "ScaledObject paused at zero" : "ScaledObject not paused");
    this.#listeners.emit(paused);
  }
}
