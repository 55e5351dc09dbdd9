/**
 * Sends one exchange to a target's upstream with undici's stream() API, which writes the
 * upstream body straight into the client's socket (DESIGN.md: a pipe, not request() + send()).
 * It never answers the client with an error itself: it reports what happened, and the gate
 * decides between replaying, holding again and failing.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Writable } from "node:stream";
import { Pool } from "undici";
import { COLD_BODY_LIMIT, type ColdSignals } from "./cold-signals.js";
import type { Exchange } from "./exchange.js";
import { upstreamRequestHeaders } from "./headers.js";
import { Collector, discard } from "./sinks.js";

export type ColdReason = "connection_refused" | "no_endpoints";

export type ForwardResult =
  /** The upstream's answer went to the client (it may still have been cut mid-body). */
  | { readonly kind: "sent"; readonly status: number }
  /** The upstream could not take it and nothing reached the client: safe to hold and replay. */
  | { readonly kind: "cold"; readonly reason: ColdReason }
  /** It failed before any byte reached the client; not known to be safe to replay. */
  | { readonly kind: "failed"; readonly error: Error }
  /** It failed after the upstream's head went to the client; the response was cut. */
  | { readonly kind: "broken"; readonly error: Error }
  | { readonly kind: "aborted" };

/**
 * Errors raised before a connection exists: no request byte was sent, so a replay cannot run a
 * generation twice. Everything else after the request went out is not retried.
 */
const NOT_CONNECTED = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

const SENT_OK: ForwardResult = { kind: "sent", status: 200 };
const COLD_REFUSED: ForwardResult = { kind: "cold", reason: "connection_refused" };
const COLD_NO_ENDPOINTS: ForwardResult = { kind: "cold", reason: "no_endpoints" };
const ABORTED: ForwardResult = { kind: "aborted" };

export interface ForwarderOptions {
  readonly upstream: string;
  readonly coldSignals: ColdSignals;
  /** Idle time between body chunks before a silent stream is cut (limits.upstreamIdleTimeout). */
  readonly idleTimeout: number;
}

function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  // undici wraps connect errors; AggregateError holds one per address tried.
  for (let depth = 0; depth < 4 && e; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && NOT_CONNECTED.has(code)) return code;
    const inner = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length > 0) {
      const codes = inner.map(errorCode);
      if (codes.every((c) => c !== undefined)) return codes[0];
    }
    e = (e as { cause?: unknown }).cause;
  }
  return (err as { code?: string } | undefined)?.code;
}

export class Forwarder {
  readonly #pool: Pool;
  readonly #basePath: string;
  readonly #cold: ColdSignals;
  readonly #proto: "http" | "https" = "http";

  constructor(options: ForwarderOptions) {
    const url = new URL(options.upstream);
    this.#basePath = url.pathname.replace(/\/+$/, "");
    this.#cold = options.coldSignals;
    this.#pool = new Pool(url.origin, {
      // Generations run for minutes; coldfront's deadlines and client aborts rule (DESIGN.md).
      headersTimeout: 0,
      bodyTimeout: options.idleTimeout,
      // Below vLLM's 5 s idle close, so a reused socket is never one the upstream just closed.
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 4_000,
      connect: { timeout: 10_000 },
    });
  }

  async forward(ex: Exchange, heldMs: number | undefined): Promise<ForwardResult> {
    if (ex.closed) return ABORTED;
    // Set inside the factory closure, which TypeScript does not follow.
    let verdict = "relay" as "relay" | "cold" | "check";
    let status = 0;
    let resHeaders: IncomingHttpHeaders = {};
    let collector = undefined as Collector | undefined;
    try {
      await this.#pool.stream(
        {
          path: this.#basePath === "" ? ex.url : this.#basePath + ex.url,
          method: ex.method as "POST",
          headers: upstreamRequestHeaders(ex.rawHeaders, {
            remoteAddress: ex.remoteAddress,
            proto: this.#proto,
            host: ex.headers.host,
          }),
          body: ex.body ?? null,
          signal: ex.signal,
        },
        ({ statusCode, headers }): Writable => {
          status = statusCode;
          const h = headers as IncomingHttpHeaders;
          const v = this.#cold.head(statusCode, h);
          if (v === "cold") {
            verdict = "cold";
            return discard();
          }
          if (v === "need-body") {
            verdict = "check";
            resHeaders = h;
            // A long body is no gateway error text: relay it as it comes.
            collector = new Collector(COLD_BODY_LIMIT, { spill: () => ex.relay(statusCode, h, heldMs) });
            return collector;
          }
          return ex.relay(statusCode, h, heldMs);
        },
      );
    } catch (err) {
      if (ex.closed) return ABORTED;
      if (ex.headWritten) return { kind: "broken", error: err as Error };
      if (verdict === "cold") return COLD_NO_ENDPOINTS;
      const code = errorCode(err);
      if (code !== undefined && NOT_CONNECTED.has(code)) return COLD_REFUSED;
      return { kind: "failed", error: err as Error };
    }
    if (verdict === "cold") return COLD_NO_ENDPOINTS;
    if (verdict === "check" && collector && !collector.spilled) {
      const body = collector.body;
      if (this.#cold.body(status, resHeaders, body.toString("utf8"))) return COLD_NO_ENDPOINTS;
      ex.relay(status, resHeaders, heldMs).end(body);
    }
    return status === 200 ? SENT_OK : { kind: "sent", status };
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  /** Cuts every upstream connection at once (end of the shutdown grace period). */
  async destroy(): Promise<void> {
    await this.#pool.destroy();
  }
}
