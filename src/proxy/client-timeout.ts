/**
 * The client's own stated timeout (DESIGN.md step 7): openai-node sends X-Stainless-Timeout and
 * openai-python X-Stainless-Read-Timeout, in seconds. A held request must answer before it.
 */
import type { IncomingHttpHeaders } from "node:http";
import { headerValue } from "./headers.js";

const HEADERS = ["x-stainless-timeout", "x-stainless-read-timeout"] as const;

/** The client's timeout in ms, or undefined when it stated none (or nonsense). */
export function clientTimeoutMs(headers: IncomingHttpHeaders): number | undefined {
  let best: number | undefined;
  for (const name of HEADERS) {
    const v = headerValue(headers, name);
    if (v === undefined) continue;
    const seconds = Number(v);
    if (!Number.isFinite(seconds) || seconds <= 0) continue;
    const ms = seconds * 1000;
    if (best === undefined || ms < best) best = ms;
  }
  return best;
}

/**
 * How long a request may be held: the hold timeout, or the client's timeout less a margin when
 * that is sooner. The margin never eats more than half the client's budget, so a client with a
 * short timeout is still held for a while rather than refused at once.
 */
export function holdBudget(
  holdTimeout: number,
  clientMs: number | undefined,
  margin: number,
): { ms: number; clientBound: boolean } {
  if (clientMs === undefined) return { ms: holdTimeout, clientBound: false };
  const ms = Math.max(clientMs - margin, clientMs / 2);
  return ms < holdTimeout ? { ms, clientBound: true } : { ms: holdTimeout, clientBound: false };
}
