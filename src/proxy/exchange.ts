/**
 * One client request and its response, whatever path it takes (warm, held, replayed). It owns
 * the rules for what may still be written to the client: an error body before any header, an
 * SSE error event after early stream headers, nothing once the upstream's bytes have flowed. It
 * also owns the request body's share of the byte budget, returned once the body is no longer kept.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import type { Writable } from "node:stream";
import { ColdfrontError } from "../errors.js";
import type { ByteBudget } from "../limits/byte-budget.js";
import type { ExchangeObserver } from "../observe/observer.js";
import { clientResponseHeaders } from "./headers.js";
import { Collector } from "./sinks.js";

/** Header that tells a client its request was held, and for how long (DESIGN.md). */
export const HELD_MS_HEADER = "x-coldfront-held-ms";
/** On a held answer: how long the cold start it waited through took (README "Long cold starts"). */
export const COLD_START_MS_HEADER = "x-coldfront-cold-start-ms";

/** Bounded upstream error text relayed inside an SSE error event. */
const UPSTREAM_ERROR_SNIPPET = 4096;

export interface ExchangeInit {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly body: Buffer | undefined;
  /** The socket's peer. */
  readonly remoteAddress: string | undefined;
  /** The peer is one of trustedProxies: its X-Forwarded-* headers are kept and extended. */
  readonly trustedPeer: boolean;
  /** Who the request belongs to for fairness: `key:<id>` (verified) or `addr:<client address>`. */
  readonly identity: string;
  readonly res: ServerResponse;
  readonly arrivedAt: number;
  /** The budget the body's bytes were reserved from, and how many. */
  readonly budget?: ByteBudget;
  readonly reserved?: number;
  /** The body parsed as JSON by routing, when routing needed it. */
  readonly json?: unknown;
  /** Request logs and traces (README "Observing requests"); undefined when neither is on. */
  readonly observer?: ExchangeObserver | undefined;
}

/** What a held request waited through, for its response headers. */
export interface HeldFacts {
  heldMs: number;
  /** The cold start's duration, once the target became ready. */
  coldStartMs: number | undefined;
}

export class Exchange {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly remoteAddress: string | undefined;
  readonly trustedPeer: boolean;
  readonly identity: string;
  readonly res: ServerResponse;
  /** performance.now() at arrival. */
  readonly arrivedAt: number;
  /** Arrival order within its gate: a replay sent back is re-queued by it (strict FIFO). */
  seq = 0;
  /** Set by the gate before a replay; undefined on the warm path. */
  held: HeldFacts | undefined;
  /** The gate answered it itself (shutdown) while an upstream attempt was out. */
  abandoned = false;
  /** How it ended, by coldfront_requests_total's outcome label (set by the gate). */
  outcome: string | undefined;
  readonly observer: ExchangeObserver | undefined;
  /** Upstream attempts made, and performance.now() of the first (for observers). */
  attempts = 0;
  firstAttemptAt: number | undefined;
  /** Response body bytes relayed to the client (counted only with an observer). */
  bytesOut = 0;
  readonly #bytesIn: number;
  #body: Buffer | undefined;
  #budget: ByteBudget | undefined;
  #reserved: number;
  #json: unknown;
  #jsonParsed: boolean;
  #streaming: boolean | undefined;
  /** The upstream exchange in progress, aborted if the client goes away. */
  #upstream: { abort(reason: Error): void } | undefined;
  /** We wrote 200 + SSE headers ourselves while the request was held (DESIGN.md step 7). */
  #early = false;
  /** Some status line went to the client (ours or the upstream's). */
  #headWritten = false;
  /** The upstream's answer began to go to the client: from here on nothing is retried. */
  #upstreamAnswered = false;
  #closed = false;
  #onClose: (() => void) | undefined;

  constructor(init: ExchangeInit) {
    this.method = init.method;
    this.url = init.url;
    this.headers = init.headers;
    this.rawHeaders = init.rawHeaders;
    this.#body = init.body;
    this.remoteAddress = init.remoteAddress;
    this.trustedPeer = init.trustedPeer;
    this.identity = init.identity;
    this.res = init.res;
    this.arrivedAt = init.arrivedAt;
    this.#budget = init.budget;
    this.#reserved = init.reserved ?? 0;
    this.#json = init.json;
    this.#jsonParsed = init.json !== undefined;
    this.observer = init.observer;
    this.#bytesIn = init.body?.length ?? 0;
    init.res.once("close", () => {
      this.releaseBody();
      if (!init.res.writableFinished) {
        this.#closed = true;
        this.#upstream?.abort(new Error("client went away"));
        this.#onClose?.();
      }
      // After the gate has recorded how it ended (its continuation of the forward runs later
      // than this close event).
      if (this.observer !== undefined) setImmediate(() => this.#observeEnd());
    });
  }

  #observeEnd(): void {
    const res = this.res;
    const status = res.headersSent ? res.statusCode : 0;
    (this.observer as ExchangeObserver).finished({
      status,
      outcome: this.outcome ?? (this.#closed ? "client_aborted" : "forwarded"),
      bytesIn: this.#bytesIn,
      bytesOut: this.bytesOut,
      heldMs: this.held?.heldMs ?? 0,
      upstreamMs: this.firstAttemptAt === undefined ? undefined : performance.now() - this.firstAttemptAt,
    });
  }

  get body(): Buffer | undefined {
    return this.#body;
  }

  /**
   * The body is no longer needed (the upstream answered for real, or the exchange ended): its
   * bytes leave the budget. Idempotent.
   */
  releaseBody(): void {
    this.#body = undefined;
    if (this.#reserved > 0) {
      this.#budget?.release(this.#reserved);
      this.#reserved = 0;
    }
  }

  /** The client went away before its response finished. */
  get closed(): boolean {
    return this.#closed;
  }

  get headWritten(): boolean {
    return this.#headWritten;
  }

  /**
   * The upstream's own answer (not coldfront's early SSE head or comments) began to reach the
   * client: DESIGN.md step 6, nothing is retried once it has.
   */
  get upstreamAnswered(): boolean {
    return this.#upstreamAnswered;
  }

  get earlyStream(): boolean {
    return this.#early;
  }

  /**
   * Ties an upstream exchange to this client (DESIGN.md step 8: aborted when the client goes
   * away); undefined unties it. Returns false when the client is already gone.
   */
  attachUpstream(upstream: { abort(reason: Error): void } | undefined): boolean {
    this.#upstream = upstream;
    return !this.#closed;
  }

  /** One listener for the client going away (the hold queue drops the ticket). */
  onClose(listener: (() => void) | undefined): void {
    this.#onClose = listener;
  }

  /** The JSON body, or undefined when there is none or it is not JSON. Parsed at most once. */
  json(): unknown {
    if (!this.#jsonParsed) {
      this.#jsonParsed = true;
      this.#json = parseJsonBody(this.#body);
    }
    return this.#json;
  }

  /** An OpenAI streaming request (`"stream": true`), which may get early SSE headers. */
  get streaming(): boolean {
    if (this.#streaming === undefined) {
      const j = this.json();
      this.#streaming = typeof j === "object" && j !== null && (j as { stream?: unknown }).stream === true;
    }
    return this.#streaming;
  }

  /**
   * Drops the parsed body once routing is done: a held request keeps its raw bytes for replay,
   * and a parsed copy beside them would double what every held request costs in memory.
   */
  forgetJson(): void {
    void this.streaming;
    this.#json = undefined;
  }

  /**
   * Answers for the gate while an upstream attempt may still be out (shutdown): the client gets
   * `err` if nothing was written yet, and the attempt is aborted.
   */
  abandon(err: ColdfrontError): void {
    this.abandoned = true;
    this.fail(err, this.held?.heldMs);
    this.#upstream?.abort(new Error(err.message));
  }

  /**
   * Where the upstream's response goes. Before any header: the upstream's status and headers,
   * plus the held time. After early SSE headers: a 200 stream continues as is (its own status and
   * headers are not written twice); any other answer becomes one final SSE error event.
   */
  relay(status: number, headers: IncomingHttpHeaders, held: HeldFacts | undefined): Writable {
    this.#upstreamAnswered = true;
    if (this.#early) {
      const encoding = headers["content-encoding"];
      if (status === 200 && (encoding === undefined || encoding === "identity")) {
        if (held !== undefined) this.res.write(`: held ${Math.round(held.heldMs)}ms\n\n`);
        return this.res;
      }
      return new Collector(UPSTREAM_ERROR_SNIPPET, {
        onEnd: (body) => {
          // Our early headers declared an uncompressed stream; compressed bytes would corrupt it.
          const text =
            status === 200
              ? `content-encoding ${encoding} on a stream whose headers already went out uncompressed`
              : `${status} after the stream had started: ${body.toString("utf8").replace(/\s+/g, " ").trim()}`;
          this.fail(new ColdfrontError("upstream_error", `upstream answered ${text}`));
        },
      });
    }
    const out: OutgoingHttpHeaders = clientResponseHeaders(headers);
    if (held !== undefined) setHeldHeaders(out, held);
    this.#headWritten = true;
    this.res.writeHead(status, out);
    return this.res;
  }

  /**
   * Answers with a coldfront error in whatever form is still possible; a no-op once the client
   * is gone. Returns false when nothing could be said (bytes of another answer already went out).
   */
  fail(err: ColdfrontError, heldMs?: number): boolean {
    const res = this.res;
    if (this.#closed || res.writableEnded) return false;
    if (this.#early) {
      // SDKs raise on an `error` event; no [DONE] follows so the stream reads as failed.
      res.end(err.sseEvent());
      return true;
    }
    if (this.#headWritten || res.headersSent) {
      res.destroy();
      return false;
    }
    this.#headWritten = true;
    const headers: OutgoingHttpHeaders = err.headers();
    if (heldMs !== undefined) headers[HELD_MS_HEADER] = String(Math.round(heldMs));
    res.writeHead(err.status, headers);
    res.end(err.body());
    return true;
  }

  /** Sends 200 and SSE headers while still held, so header timeouts do not fire (DESIGN.md step 7). */
  startEarlyStream(comment: string): void {
    if (this.#headWritten || this.#closed) return;
    this.#early = true;
    this.#headWritten = true;
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    });
    this.res.write(`: ${comment}\n\n`);
  }

  /** An SSE comment line; harmless to every SSE parser. */
  comment(text: string): void {
    if (this.#early && !this.#closed && !this.res.writableEnded) this.res.write(`: ${text}\n\n`);
  }
}

function setHeldHeaders(out: OutgoingHttpHeaders, held: HeldFacts): void {
  out[HELD_MS_HEADER] = String(Math.round(held.heldMs));
  if (held.coldStartMs !== undefined) out[COLD_START_MS_HEADER] = String(Math.round(held.coldStartMs));
}

function parseJsonBody(body: Buffer | undefined): unknown {
  if (body === undefined || body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}
