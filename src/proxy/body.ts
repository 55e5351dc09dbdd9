/**
 * Reads a request body into memory, bounded three ways (README "Bounds"): by
 * `limits.maxBodyBytes` (413), by the process-wide byte budget (503 queue_full, reserved as the
 * bytes arrive, or all at once when Content-Length announces them), and in time by
 * `limits.requestTimeout`, which Node's server enforces per connection with no timer per request
 * (src/proxy/server.ts answers its 408; the reader then sees the socket close and returns its
 * bytes). A body being read holds no place in any queue, so without these a slow or endless body
 * would be the cheapest way to grow coldfront's memory.
 */
import type { IncomingMessage } from "node:http";
import { ColdfrontError } from "../errors.js";
import type { ByteBudget } from "../limits/byte-budget.js";

export interface BodyLimits {
  readonly maxBodyBytes: number;
  readonly budget: ByteBudget;
}

export type BodyResult =
  | { readonly kind: "ok"; readonly body: Buffer | undefined; readonly reserved: number }
  /** Refused: answer `error`; the rest of the body, if any, is discarded. */
  | { readonly kind: "refused"; readonly error: ColdfrontError }
  /** The client went away mid-body. */
  | { readonly kind: "gone" };

const TOO_LARGE = (max: number) =>
  new ColdfrontError(
    "body_too_large",
    `the request body is larger than this server accepts (limits.maxBodyBytes, ${max} bytes)`,
  );
const OVER_BUDGET = () =>
  new ColdfrontError(
    "queue_full",
    "coldfront holds as many request bytes as it may (limits.maxHeldBytes); retry shortly",
  );

/** True when the request has a body to read (a Content-Length above 0, or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers["content-length"];
  if (cl !== undefined) return cl !== "0";
  return req.headers["transfer-encoding"] !== undefined;
}

/**
 * Reads `req`'s body. Node's parser has already refused a malformed Content-Length, a conflict
 * with Transfer-Encoding and bad chunking; what is left here is size, budget and time.
 */
export function readBody(req: IncomingMessage, limits: BodyLimits, done: (r: BodyResult) => void): void {
  const cl = req.headers["content-length"];
  const declared = cl === undefined ? undefined : Number(cl);
  if (declared !== undefined && declared > limits.maxBodyBytes) {
    done({ kind: "refused", error: TOO_LARGE(limits.maxBodyBytes) });
    return;
  }
  if (declared !== undefined && !limits.budget.tryReserve(declared)) {
    done({ kind: "refused", error: OVER_BUDGET() });
    return;
  }
  new BodyReader(req, limits, declared, done);
}

class BodyReader {
  readonly #req: IncomingMessage;
  readonly #limits: BodyLimits;
  readonly #done: (r: BodyResult) => void;
  /** With Content-Length: one buffer of exactly that size, so no copy is made at the end. */
  readonly #whole: Buffer | undefined;
  #chunks: Buffer[] | undefined;
  #size = 0;
  #reserved: number;
  #finished = false;

  constructor(
    req: IncomingMessage,
    limits: BodyLimits,
    declared: number | undefined,
    done: (r: BodyResult) => void,
  ) {
    this.#req = req;
    this.#limits = limits;
    this.#done = done;
    this.#reserved = declared ?? 0;
    if (declared !== undefined) this.#whole = Buffer.allocUnsafe(declared);
    else this.#chunks = [];
    req.on("data", this.#onData);
    req.once("end", this.#onEnd);
    req.once("close", this.#onClose);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#finished) return;
    if (this.#whole !== undefined) {
      chunk.copy(this.#whole, this.#size);
      this.#size += chunk.length;
      return;
    }
    const next = this.#size + chunk.length;
    if (next > this.#limits.maxBodyBytes) {
      this.#refuse(TOO_LARGE(this.#limits.maxBodyBytes));
      return;
    }
    if (!this.#limits.budget.tryReserve(chunk.length)) {
      this.#refuse(OVER_BUDGET());
      return;
    }
    this.#reserved += chunk.length;
    this.#size = next;
    this.#chunks?.push(chunk);
  };

  readonly #onEnd = (): void => {
    if (this.#finished) return;
    this.#end();
    let body: Buffer | undefined;
    if (this.#whole !== undefined) body = this.#size === 0 ? undefined : this.#whole;
    else {
      const chunks = this.#chunks as Buffer[];
      body =
        chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, this.#size);
    }
    this.#chunks = undefined;
    const reserved = body === undefined ? this.#giveBack() : this.#reserved;
    this.#done({ kind: "ok", body, reserved });
  };

  readonly #onClose = (): void => {
    if (this.#finished) return;
    this.#end();
    this.#giveBack();
    this.#done({ kind: "gone" });
  };

  #refuse(error: ColdfrontError): void {
    this.#end();
    this.#giveBack();
    this.#chunks = undefined;
    this.#done({ kind: "refused", error });
  }

  #end(): void {
    this.#finished = true;
    this.#req.off("data", this.#onData);
    this.#req.off("end", this.#onEnd);
    this.#req.off("close", this.#onClose);
  }

  /** Returns what was reserved; 0 for the caller to keep. */
  #giveBack(): 0 {
    if (this.#reserved > 0) this.#limits.budget.release(this.#reserved);
    this.#reserved = 0;
    return 0;
  }
}
