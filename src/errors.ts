/**
 * The one error vocabulary of coldfront (DESIGN.md "Errors"). Every error that coldfront itself
 * answers is built here, so that status codes, retry hints and the OpenAI body shape are spelled
 * in exactly one place.
 */
import { STATUS_CODES } from "node:http";

export type ErrorType =
  | "invalid_request"
  | "invalid_api_key"
  | "request_timeout"
  | "no_route"
  | "body_too_large"
  | "rate_limited"
  | "upstream_error"
  | "upstream_timeout"
  | "cold_start_timeout"
  | "queue_full"
  | "target_cold"
  | "autoscaler_paused"
  | "shutting_down"
  | "overloaded";

interface ErrorKind {
  readonly status: number;
  /** Retryable errors carry Retry-After, retry-after-ms and x-should-retry: true. */
  readonly retryable: boolean;
  /** Default Retry-After in seconds for retryable errors. */
  readonly retryAfter: number;
}

const KINDS: Readonly<Record<ErrorType, ErrorKind>> = {
  invalid_request: { status: 400, retryable: false, retryAfter: 0 },
  invalid_api_key: { status: 401, retryable: false, retryAfter: 0 },
  // The client was too slow sending its request; a retry on a better link may work (SDKs retry 408).
  request_timeout: { status: 408, retryable: true, retryAfter: 1 },
  no_route: { status: 404, retryable: false, retryAfter: 0 },
  body_too_large: { status: 413, retryable: false, retryAfter: 0 },
  // A client over its share of the hold queue; retrying soon is right once others drained.
  rate_limited: { status: 429, retryable: true, retryAfter: 5 },
  upstream_error: { status: 502, retryable: false, retryAfter: 0 },
  // The request was sent, so a retry could run the generation twice: not retryable.
  upstream_timeout: { status: 504, retryable: false, retryAfter: 0 },
  cold_start_timeout: { status: 503, retryable: true, retryAfter: 30 },
  queue_full: { status: 503, retryable: true, retryAfter: 10 },
  target_cold: { status: 503, retryable: true, retryAfter: 30 },
  autoscaler_paused: { status: 503, retryable: true, retryAfter: 60 },
  // Its retry lands on another replica, so it may come back at once.
  shutting_down: { status: 503, retryable: true, retryAfter: 1 },
  // Ready, but held past its deadline by the release cap: the backlog ahead is still draining.
  overloaded: { status: 503, retryable: true, retryAfter: 5 },
};

/** OpenAI SDKs only honour Retry-After up to 60 s (DESIGN.md step 7). */
export const MAX_RETRY_AFTER_S = 60;

export class ColdfrontError extends Error {
  readonly type: ErrorType;
  readonly status: number;
  readonly retryable: boolean;
  /** Whole seconds; only meaningful when retryable. */
  readonly retryAfter: number;
  /** The same wait in ms (retry-after-ms, which openai-node prefers), between 1 s and 60 s. */
  readonly retryAfterMs: number;

  /** `retryAfter` in seconds, or `retryAfterMs` for a precise hint (a cold-start ETA). */
  constructor(
    type: ErrorType,
    message: string,
    options?: {
      retryAfter?: number;
      retryAfterMs?: number;
      cause?: unknown;
      /** Overrides the type's rule: an upstream_error whose request never got an answer is. */
      retryable?: boolean;
    },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    const kind = KINDS[type];
    this.name = "ColdfrontError";
    this.type = type;
    this.status = kind.status;
    this.retryable = options?.retryable ?? kind.retryable;
    const ms = options?.retryAfterMs ?? (options?.retryAfter ?? kind.retryAfter) * 1000;
    this.retryAfterMs = Math.min(MAX_RETRY_AFTER_S * 1000, Math.max(1000, Math.round(ms)));
    this.retryAfter = Math.ceil(this.retryAfterMs / 1000);
  }

  /** The OpenAI-shaped body: `code` repeats `type`. */
  body(): string {
    return JSON.stringify({
      error: { message: this.message, type: this.type, param: null, code: this.type },
    });
  }

  /** The body as one SSE event, for a stream whose headers already went out. */
  sseEvent(): string {
    return `data: ${this.body()}\n\n`;
  }

  /** The whole response as raw HTTP/1.1 bytes, for a socket that has no ServerResponse (a parse error). */
  rawResponse(): string {
    const body = this.body();
    let head = `HTTP/1.1 ${this.status} ${STATUS_CODES[this.status] ?? "Error"}\r\n`;
    for (const [k, v] of Object.entries(this.headers())) head += `${k}: ${v}\r\n`;
    return `${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
  }

  headers(): Record<string, string> {
    const h: Record<string, string> = { "content-type": "application/json" };
    if (this.retryable) {
      h["retry-after"] = String(this.retryAfter);
      h["retry-after-ms"] = String(this.retryAfterMs);
      h["x-should-retry"] = "true";
    } else {
      h["x-should-retry"] = "false";
    }
    return h;
  }
}

export function isColdfrontError(err: unknown): err is ColdfrontError {
  return err instanceof ColdfrontError;
}

/** A configuration problem, named by the key path (DESIGN.md "Configuration"). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}
