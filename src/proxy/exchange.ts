/**
 * One client request and its response, whatever path it takes (warm, held, replayed). It owns
 * the rules for what may still be written to the client: an error body before any header, an
 * SSE error event after early stream headers, nothing once the upstream's bytes have flowed.
 */
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Writable } from "node:stream";
import { ColdfrontError } from "../errors.js";
import { clientResponseHeaders } from "./headers.js";
import { Collector } from "./sinks.js";

/** Header that tells a client its request was held, and for how long (DESIGN.md). */
export const HELD_MS_HEADER = "x-coldfront-held-ms";

/** Bounded upstream error text relayed inside an SSE error event. */
const UPSTREAM_ERROR_SNIPPET = 4096;

export interface ExchangeInit {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly body: Buffer | undefined;
  readonly remoteAddress: string | undefined;
  readonly res: ServerResponse;
  readonly arrivedAt: number;
  /** The body parsed as JSON by routing, when routing needed it. */
  readonly json?: unknown;
}

export class Exchange {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly body: Buffer | undefined;
  readonly remoteAddress: string | undefined;
  readonly res: ServerResponse;
  /** performance.now() at arrival. */
  readonly arrivedAt: number;
  #json: unknown;
  #jsonParsed: boolean;
  #streaming: boolean | undefined;
  /** The upstream exchange in progress, aborted if the client goes away. */
  #upstream: { abort(reason: Error): void } | undefined;
  /** We wrote 200 + SSE headers ourselves while the request was held (DESIGN.md step 7). */
  #early = false;
  /** Some status line went to the client (ours or the upstream's). */
  #headWritten = false;
  #closed = false;
  #onClose: (() => void) | undefined;

  constructor(init: ExchangeInit) {
    this.method = init.method;
    this.url = init.url;
    this.headers = init.headers;
    this.rawHeaders = init.rawHeaders;
    this.body = init.body;
    this.remoteAddress = init.remoteAddress;
    this.res = init.res;
    this.arrivedAt = init.arrivedAt;
    this.#json = init.json;
    this.#jsonParsed = init.json !== undefined;
    init.res.once("close", () => {
      if (init.res.writableFinished) return;
      this.#closed = true;
      this.#upstream?.abort(new Error("client went away"));
      this.#onClose?.();
    });
  }

  /** The client went away before its response finished. */
  get closed(): boolean {
    return this.#closed;
  }

  get headWritten(): boolean {
    return this.#headWritten;
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
      this.#json = parseJsonBody(this.body);
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
   * Who a request belongs to for fairness (issue 4): the API key, hashed so the key itself is
   * never kept or logged, else the client address.
   */
  clientKey(): string {
    const auth = this.headers.authorization ?? this.headers["api-key"] ?? this.headers["x-api-key"];
    const key = Array.isArray(auth) ? auth[0] : auth;
    if (key) return `key:${createHash("sha256").update(key).digest("base64url").slice(0, 16)}`;
    return `addr:${this.remoteAddress ?? "unknown"}`;
  }

  /**
   * Where the upstream's response goes. Before any header: the upstream's status and headers,
   * plus the held time. After early SSE headers: a 200 stream continues as is (its own status and
   * headers are not written twice); any other answer becomes one final SSE error event.
   */
  relay(status: number, headers: IncomingHttpHeaders, heldMs: number | undefined): Writable {
    if (this.#early) {
      if (status === 200) {
        if (heldMs !== undefined) this.res.write(`: held ${Math.round(heldMs)}ms\n\n`);
        return this.res;
      }
      return new Collector(UPSTREAM_ERROR_SNIPPET, {
        onEnd: (body) => {
          const text = body.toString("utf8").replace(/\s+/g, " ").trim();
          this.fail(
            new ColdfrontError(
              "upstream_error",
              `upstream answered ${status} after the stream had started: ${text}`,
            ),
          );
        },
      });
    }
    const out: OutgoingHttpHeaders = clientResponseHeaders(headers);
    if (heldMs !== undefined) out[HELD_MS_HEADER] = String(Math.round(heldMs));
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

function parseJsonBody(body: Buffer | undefined): unknown {
  if (body === undefined || body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}
