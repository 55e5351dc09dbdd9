/**
 * Sends one exchange to a target's upstream with undici's dispatch() API and a handler that
 * writes the upstream body straight into the client's socket (DESIGN.md: a pipe, not request() +
 * send(); dispatch() also skips the per-request stream and async-scope machinery of stream()).
 * It never answers the client with an error itself: it reports what happened, and the gate
 * decides between replaying, holding again and failing.
 */
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Writable } from "node:stream";
import { type Dispatcher, Pool } from "undici";
import { chunkSocket, writeChunk } from "./chunk-writer.js";
import { COLD_BODY_LIMIT, type ColdSignals } from "./cold-signals.js";
import type { Exchange } from "./exchange.js";
import { upstreamRequestHeaders } from "./headers.js";
import { Collector } from "./sinks.js";

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
  /** A replay answered with an overload signal ("busy now"); nothing reached the client. */
  | { readonly kind: "overloaded" }
  /**
   * A replay's connection was reset or closed before any response head: the upstream may have
   * been past its capacity. Nothing reached the client.
   */
  | { readonly kind: "dropped"; readonly error: Error }
  /** No response head within limits.upstreamHeadersTimeout; the request was sent, so no replay. */
  | { readonly kind: "timeout" }
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

/** A connection the upstream dropped after the request went out and before any response head. */
const DROPPED = new Set(["ECONNRESET", "EPIPE", "UND_ERR_SOCKET"]);

const SENT_OK: ForwardResult = { kind: "sent", status: 200 };
const OVERLOADED: ForwardResult = { kind: "overloaded" };
const COLD_REFUSED: ForwardResult = { kind: "cold", reason: "connection_refused" };
const COLD_NO_ENDPOINTS: ForwardResult = { kind: "cold", reason: "no_endpoints" };
const ABORTED: ForwardResult = { kind: "aborted" };
const TIMED_OUT: ForwardResult = { kind: "timeout" };

export interface ForwarderOptions {
  readonly upstream: string;
  readonly coldSignals: ColdSignals;
  /** Answers that put a replay back (targets[].overloadSignals); only replays look for them. */
  readonly overloadSignals?: ColdSignals | undefined;
  /** Idle time between body chunks before a silent stream is cut (limits.upstreamIdleTimeout). */
  readonly idleTimeout: number;
  /** limits.upstreamHeadersTimeout: longest wait for a response head; undefined waits for ever. */
  readonly headersTimeout?: number | undefined;
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
  readonly #origin: string;
  readonly #basePath: string;
  readonly #cold: ColdSignals;
  readonly #overload: ColdSignals | undefined;
  readonly #proto: "http" | "https" = "http";

  constructor(options: ForwarderOptions) {
    const url = new URL(options.upstream);
    this.#origin = url.origin;
    this.#basePath = url.pathname.replace(/\/+$/, "");
    this.#cold = options.coldSignals;
    this.#overload = options.overloadSignals;
    this.#pool = new Pool(url.origin, {
      // Generations run for minutes; coldfront's deadlines and client aborts rule (DESIGN.md),
      // unless the operator bounds the wait for a head (README "Release after a cold start").
      headersTimeout: options.headersTimeout ?? 0,
      bodyTimeout: options.idleTimeout,
      // Below vLLM's 5 s idle close, so a reused socket is never one the upstream just closed.
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 4_000,
      connect: { timeout: 10_000 },
    });
  }

  /**
   * Sends `ex` upstream. A replay passes `onHead`: it is called once, when an answer that goes to
   * the client arrives (not a cold or overload answer, which the gate acts on first), and such a
   * replay also looks for overload signals. The release window counts a replay until then.
   */
  forward(ex: Exchange, onHead?: () => void): Promise<ForwardResult> {
    if (ex.closed) return Promise.resolve(ABORTED);
    let trace: readonly string[] | undefined;
    const obs = ex.observer;
    if (obs !== undefined) {
      ex.firstAttemptAt ??= performance.now();
      trace = obs.attemptStarted(++ex.attempts);
    }
    return new Promise<ForwardResult>((resolve) => {
      this.#pool.dispatch(
        {
          origin: this.#origin,
          path: this.#basePath === "" ? ex.url : this.#basePath + ex.url,
          method: ex.method as "POST",
          headers: upstreamRequestHeaders(ex.rawHeaders, {
            remoteAddress: ex.remoteAddress,
            trustedPeer: ex.trustedPeer,
            proto: this.#proto,
            host: ex.headers.host,
            identity: ex.earlyStream,
            trace,
          }),
          body: ex.body ?? null,
        },
        new Relay(ex, this.#cold, onHead === undefined ? undefined : this.#overload, resolve, onHead),
      );
    });
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  /** Cuts every upstream connection at once (end of the shutdown grace period). */
  async destroy(): Promise<void> {
    await this.#pool.destroy();
  }
}

/**
 * One upstream exchange as an undici dispatch handler. On the response head it decides where the
 * body goes: the client (relay), nowhere (a cold signal), or a bounded buffer (a status that
 * might be a cold signal, decided by its body). It settles its promise exactly once.
 *
 * Chunks parsed from one socket read are written to the client as one write, in a microtask of
 * that read: an SSE stream arrives as many small chunked-encoding pieces, and a socket write per
 * piece costs more than the relay itself. Nothing waits for a later read, so this is no buffering
 * (a paced stream's chunks each arrive in their own read and go out at once).
 */
class Relay implements Dispatcher.DispatchHandler {
  readonly #ex: Exchange;
  readonly #cold: ColdSignals;
  readonly #overload: ColdSignals | undefined;
  readonly #resolve: (r: ForwardResult) => void;
  #onHead: (() => void) | undefined;
  #controller: Dispatcher.DispatchController | undefined;
  #mode: "relay" | "cold" | "overload" | "check" = "relay";
  /** The upstream's response head arrived (whatever became of it). */
  #gotHead = false;
  #status = 0;
  #headers: IncomingHttpHeaders = {};
  /** Where body chunks go; undefined drops them (a cold signal's body). */
  #sink: Writable | undefined;
  /** The client's response itself is the sink: coalesce and write directly. */
  #direct: ServerResponse | undefined;
  /** The client's socket for framed chunks (chunk-writer.ts); null once the body goes via res. */
  #chunks: Socket | null | undefined;
  #batch: Buffer[] = [];
  #batchQueued = false;
  #wrote = false;
  #done = false;

  constructor(
    ex: Exchange,
    cold: ColdSignals,
    overload: ColdSignals | undefined,
    resolve: (r: ForwardResult) => void,
    onHead: (() => void) | undefined,
  ) {
    this.#ex = ex;
    this.#cold = cold;
    this.#overload = overload;
    this.#resolve = resolve;
    this.#onHead = onHead;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // DESIGN.md step 8: the client went away, so the upstream stops generating for nobody.
    if (!this.#ex.attachUpstream(controller)) controller.abort(new Error("client went away"));
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    this.#status = statusCode;
    this.#gotHead = true;
    this.#ex.observer?.attemptHead(statusCode);
    const v = this.#cold.head(statusCode, headers);
    if (v === "cold") {
      this.#mode = "cold";
      return;
    }
    const o = this.#overload?.head(statusCode, headers) ?? "not-cold";
    if (o === "cold") {
      this.#mode = "overload";
      return;
    }
    if (v === "need-body" || o === "need-body") {
      this.#mode = "check";
      this.#headers = headers;
      // A long body is no gateway error text: relay it as it comes.
      this.#sink = new Collector(COLD_BODY_LIMIT, {
        spill: () => this.#relay(statusCode, headers),
      });
      this.#watch(controller, this.#sink);
      return;
    }
    const out = this.#relay(statusCode, headers);
    if (out === this.#ex.res) this.#direct = this.#ex.res;
    this.#sink = out;
    this.#watch(controller, out);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#direct !== undefined) {
      this.#batch.push(chunk);
      if (!this.#batchQueued) {
        this.#batchQueued = true;
        queueMicrotask(this.#flush);
      }
      return;
    }
    if (this.#sink !== undefined && !this.#sink.write(chunk)) this.#pause();
  }

  onResponseEnd(): void {
    if (this.#direct !== undefined) {
      this.#end(this.#direct);
      this.#finish(this.#status === 200 ? SENT_OK : { kind: "sent", status: this.#status });
      return;
    }
    if (this.#mode === "cold") {
      this.#finish(COLD_NO_ENDPOINTS);
      return;
    }
    if (this.#mode === "overload") {
      this.#finish(OVERLOADED);
      return;
    }
    const sink = this.#sink;
    if (this.#mode === "check" && sink instanceof Collector && !sink.spilled) {
      const body = sink.body;
      const text = body.toString("utf8");
      if (this.#cold.body(this.#status, this.#headers, text)) {
        this.#finish(COLD_NO_ENDPOINTS);
        return;
      }
      if (this.#overload?.body(this.#status, this.#headers, text)) {
        this.#finish(OVERLOADED);
        return;
      }
      this.#relay(this.#status, this.#headers).end(body);
    } else {
      sink?.end();
    }
    this.#finish(this.#status === 200 ? SENT_OK : { kind: "sent", status: this.#status });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const ex = this.#ex;
    if (this.#direct !== undefined) this.#flush();
    if (ex.closed) {
      this.#finish(ABORTED);
      return;
    }
    // Only the upstream's own answer counts here: coldfront's early SSE head and keepalive
    // comments of a held stream are not it, so such a stream is put back like any request.
    if (ex.upstreamAnswered) {
      // Bytes of the upstream's answer are out: the client can only see it cut.
      if (this.#wrote) ex.res.destroy(err);
      else if (this.#sink !== undefined && this.#sink !== ex.res) this.#sink.destroy(err);
      this.#finish({ kind: "broken", error: err });
      return;
    }
    if (this.#mode === "cold") {
      this.#finish(COLD_NO_ENDPOINTS);
      return;
    }
    if (this.#mode === "overload") {
      this.#finish(OVERLOADED);
      return;
    }
    const code = errorCode(err);
    if (code === "UND_ERR_HEADERS_TIMEOUT") {
      this.#finish(TIMED_OUT);
      return;
    }
    if (code !== undefined && NOT_CONNECTED.has(code)) {
      this.#finish(COLD_REFUSED);
      return;
    }
    this.#finish(
      !this.#gotHead && code !== undefined && DROPPED.has(code)
        ? { kind: "dropped", error: err }
        : { kind: "failed", error: err },
    );
  }

  /** The upstream really answered: the body is no longer needed for a replay (byte budget). */
  #relay(status: number, headers: IncomingHttpHeaders): Writable {
    this.#head();
    this.#ex.releaseBody();
    return this.#ex.relay(status, headers, this.#ex.held);
  }

  #head(): void {
    const h = this.#onHead;
    if (h !== undefined) {
      this.#onHead = undefined;
      h();
    }
  }

  readonly #flush = (): void => {
    this.#batchQueued = false;
    const res = this.#direct;
    if (res === undefined) return;
    const out = this.#take(res);
    if (out === undefined) return;
    if (this.#chunks === undefined) this.#chunks = chunkSocket(res) ?? null;
    const socket = this.#chunks;
    const ok = socket === null ? res.write(out) : socket.destroyed || writeChunk(socket, out);
    if (!ok) this.#pause();
  };

  /**
   * The upstream's body ended. A body that came whole in the read that ended it (a JSON answer)
   * goes out with its head in one `res.end()`: one socket write, no cork.
   */
  #end(res: ServerResponse): void {
    if (this.#wrote) this.#flush();
    const out = this.#take(res);
    if (out === undefined) res.end();
    else res.end(out);
  }

  /** The chunks batched so far as one buffer, counted as written; undefined if none can go out. */
  #take(res: ServerResponse): Buffer | undefined {
    const batch = this.#batch;
    if (batch.length === 0) return undefined;
    this.#batch = [];
    if (res.destroyed || res.writableEnded) return undefined;
    this.#wrote = true;
    const out = batch.length === 1 ? (batch[0] as Buffer) : Buffer.concat(batch);
    if (this.#ex.observer !== undefined) this.#ex.bytesOut += out.length;
    return out;
  }

  /** Backpressure: stop reading the upstream until the client's socket drains. */
  #pause(): void {
    const c = this.#controller;
    const sink = this.#chunks ?? this.#direct ?? this.#sink;
    if (c === undefined || sink === undefined || c.paused) return;
    c.pause();
    sink.once("drain", () => {
      if (!c.aborted) c.resume();
    });
  }

  /** A sink that fails (the client's socket, or a spill target) aborts the upstream. */
  #watch(controller: Dispatcher.DispatchController, sink: Writable): void {
    if (sink === this.#ex.res) return; // the Exchange's close listener covers the client
    sink.once("error", (err: Error) => {
      if (!controller.aborted) controller.abort(err);
    });
  }

  #finish(result: ForwardResult): void {
    if (this.#done) return;
    this.#done = true;
    this.#ex.observer?.attemptEnded(result.kind, result.kind === "cold" ? result.reason : undefined);
    this.#ex.attachUpstream(undefined);
    this.#resolve(result);
  }
}
