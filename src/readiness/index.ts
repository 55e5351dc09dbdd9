/**
 * Builds each target's readiness and pause sources from its config. Kubernetes and process
 * sources are loaded on demand, so a plain proxy never pays for @kubernetes/client-node.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { FastifyBaseLogger } from "fastify";
import type { TargetConfig } from "../config/schema.js";
import { AlwaysReady } from "./always.js";
import { ProbeSource } from "./probe.js";
import type { PauseSource, ReadinessSource } from "./source.js";

export interface SourceContext {
  readonly log: FastifyBaseLogger;
  /** Injected by tests (a fake API server); else in-cluster or KUBECONFIG credentials. */
  readonly kubeConfig?: KubeConfig;
}

/** One KubeConfig per process, loaded the first time a target needs it. */
export class KubeConfigProvider {
  #kc: Promise<KubeConfig> | undefined;
  constructor(injected?: KubeConfig) {
    if (injected) this.#kc = Promise.resolve(injected);
  }
  get(): Promise<KubeConfig> {
    this.#kc ??= import("@kubernetes/client-node").then((k8s) => {
      const kc = new k8s.KubeConfig();
      kc.loadFromDefault();
      return kc;
    });
    return this.#kc;
  }
}

export async function createReadinessSource(
  target: TargetConfig,
  log: FastifyBaseLogger,
  kube: KubeConfigProvider,
): Promise<ReadinessSource> {
  const r = target.readiness;
  if (r?.probe) return new ProbeSource(target.name, r.probe, log);
  if (r?.process) {
    const { ProcessSource } = await import("./process.js");
    return new ProcessSource(target.name, r.process, log);
  }
  if (r?.kubernetes) {
    const { KubernetesSource } = await import("./kubernetes.js");
    return new KubernetesSource(target.name, r.kubernetes, await kube.get(), log);
  }
  return new AlwaysReady();
}

export async function createPauseSource(
  target: TargetConfig,
  log: FastifyBaseLogger,
  kube: KubeConfigProvider,
): Promise<PauseSource | undefined> {
  if (!target.scaledObject) return undefined;
  const { ScaledObjectPauseSource } = await import("./scaled-object.js");
  return new ScaledObjectPauseSource(target.name, target.scaledObject, await kube.get(), log);
}
