/**
 * The /readyz rule (DESIGN.md "Admin surface": listeners up, informers synced; a cold target is
 * normal and does not make coldfront unready). /readyz decides whether this replica is in its
 * Service at all, so it must not go down for what concerns one target only:
 *
 * - not ready while shutting down (held requests are being answered `shutting_down`);
 * - otherwise ready once every target's readiness source has answered once: it has synced (an
 *   informer listed, a first probe came back), or the API server refused it for good (401, 403,
 *   404: `ReadinessSource.refused`), which leaves that target cold and shows why in /status;
 * - a pause source (a target's ScaledObject) never holds it: until it answers, the target counts
 *   as not paused, which only means requests are held rather than refused.
 *
 * "Listeners up" is the caller's part: /readyz is asked on the admin port, and the caller should
 * report shutting-down-or-not-listening until the client port listens too.
 */
import type { PauseSource, ReadinessSource } from "../readiness/source.js";

export interface ReadinessInput {
  readonly shuttingDown: boolean;
  readonly targets: readonly {
    readonly name: string;
    readonly source: ReadinessSource;
    /** Listed for /status's sake; it does not take part in the rule. */
    readonly pause: PauseSource | undefined;
  }[];
}

/**
 * Ready or not, with a reason per thing still missing (empty when ready).
 *
 * @example
 * readinessReport({ shuttingDown: false, targets: [{ name: "llama", source, pause: undefined }] });
 * // { ready: false, reasons: ["target 'llama': kubernetes readiness has not answered yet"] }
 */
export function readinessReport(input: ReadinessInput): { ready: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (input.shuttingDown) reasons.push("shutting down");
  for (const t of input.targets) {
    if (t.source.synced || t.source.refused !== undefined) continue;
    reasons.push(`target '${t.name}': ${t.source.kind} readiness has not answered yet`);
  }
  return { ready: reasons.length === 0, reasons };
}
