/**
 * Builds a target's waker from its config (`targets[].wake`, README "Waking without KEDA"). Loaded on demand, as the
 * Kubernetes readiness sources are (src/readiness/index.ts), so a target without `wake` never
 * pays for @kubernetes/client-node.
 */
import type { FastifyBaseLogger } from "fastify";
import type { TargetConfig } from "../config/schema.js";
import type { KubeConfigProvider } from "../readiness/index.js";
import type { PauseSource } from "../readiness/source.js";
import type { ScaleWaker } from "./scale.js";

/**
 * The target's ScaleWaker, or undefined when it has no `wake.scale`. `pause` is the target's
 * ScaledObject pause source, when it has one: no wake while it says paused at zero, nor before
 * its first list (until then "not paused" is only its default, and a write cannot be taken back).
 */
export async function createScaleWaker(
  target: TargetConfig,
  log: FastifyBaseLogger,
  kube: KubeConfigProvider,
  pause?: PauseSource,
): Promise<ScaleWaker | undefined> {
  const ref = target.wake?.scale;
  if (!ref) return undefined;
  const { ScaleWaker } = await import("./scale.js");
  return new ScaleWaker({
    target: target.name,
    ref,
    kubeConfig: await kube.get(),
    log,
    ...(pause ? { paused: () => !pause.synced || pause.paused } : {}),
  });
}
