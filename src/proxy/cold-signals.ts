/**
 * Gateway answers that mean "no endpoint yet" (DESIGN.md step 6): the request never reached a
 * model, so it is safe to hold it again and replay, as long as no byte went to the client.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { ColdSignalConfig } from "../config/schema.js";

export const DEFAULT_COLD_SIGNALS: readonly ColdSignalConfig[] = [
  // llm-d router: an explicit drop reason header.
  { status: 503, header: "x-llm-d-request-dropped-reason: rejected-no-endpoints" },
  // Gateway API Inference Extension (endpoint picker).
  { status: 503, bodyContains: "failed to find endpoint candidates" },
  // vLLM production-stack router.
  { status: 503, bodyContains: "temporarily unavailable" },
  // Envoy with an empty cluster.
  { status: 503, bodyContains: "no healthy upstream" },
];

/**
 * Answers that mean "busy now, try again shortly" (DESIGN.md "Capacity, balancing, async work and
 * packaging"): a replay that gets one is put back in the queue and the release window halves.
 */
export const DEFAULT_OVERLOAD_SIGNALS: readonly ColdSignalConfig[] = [
  { status: 429 },
  // Envoy's circuit breaker or its overload manager.
  { status: 503, header: "x-envoy-overloaded" },
  // Envoy past max_requests/max_pending_requests: "upstream connect error or disconnect/reset
  // before headers. reset reason: overflow".
  { status: 503, bodyContains: "reset reason: overflow" },
];

/** Cold-signal bodies are short error texts; reading more would buffer a real response. */
export const COLD_BODY_LIMIT = 64 * 1024;

interface CompiledSignal {
  status: number | undefined;
  headerName: string | undefined;
  headerValue: string | undefined;
  bodyContains: string | undefined;
}

/** The outcome of looking at a status line and headers. */
export type HeadVerdict = "not-cold" | "cold" | "need-body";

export class ColdSignals {
  readonly #signals: CompiledSignal[];
  readonly #statuses: Set<number> | undefined;

  /** `defaults` is what "default" means: the cold signals, or DEFAULT_OVERLOAD_SIGNALS. */
  constructor(
    config: "default" | "none" | readonly ColdSignalConfig[],
    defaults: readonly ColdSignalConfig[] = DEFAULT_COLD_SIGNALS,
  ) {
    const list = config === "default" ? defaults : config === "none" ? [] : config;
    this.#signals = list.map((s) => {
      const colon = s.header?.indexOf(":") ?? -1;
      return {
        status: s.status,
        headerName:
          s.header === undefined
            ? undefined
            : (colon < 0 ? s.header : s.header.slice(0, colon)).trim().toLowerCase(),
        headerValue:
          s.header === undefined || colon < 0
            ? undefined
            : s.header
                .slice(colon + 1)
                .trim()
                .toLowerCase(),
        bodyContains: s.bodyContains?.toLowerCase(),
      };
    });
    // Statuses that can be cold; undefined when some signal matches any status.
    this.#statuses = this.#signals.every((s) => s.status !== undefined)
      ? new Set(this.#signals.map((s) => s.status as number))
      : undefined;
  }

  /** The warm path's only cost: one Set lookup for an ordinary 200. */
  head(status: number, headers: IncomingHttpHeaders): HeadVerdict {
    if (this.#statuses !== undefined && !this.#statuses.has(status)) return "not-cold";
    let needBody = false;
    for (const s of this.#signals) {
      if (!this.#headFits(s, status, headers)) continue;
      if (s.bodyContains === undefined) return "cold";
      needBody = true;
    }
    return needBody ? "need-body" : "not-cold";
  }

  /** Called only after head() said need-body. */
  body(status: number, headers: IncomingHttpHeaders, body: string): boolean {
    const lower = body.toLowerCase();
    return this.#signals.some(
      (s) =>
        this.#headFits(s, status, headers) && s.bodyContains !== undefined && lower.includes(s.bodyContains),
    );
  }

  #headFits(s: CompiledSignal, status: number, headers: IncomingHttpHeaders): boolean {
    if (s.status !== undefined && s.status !== status) return false;
    if (s.headerName === undefined) return true;
    const v = headers[s.headerName];
    if (v === undefined) return false;
    if (s.headerValue === undefined) return true;
    const values = Array.isArray(v) ? v : [v];
    return values.some((x) => x.trim().toLowerCase() === s.headerValue);
  }
}
