/**
 * The client listener, on node:http directly: the warm path is one parse, one route and one
 * upstream dispatch, with no framework between the socket and the upstream (bench/README.md
 * measures what fastify's request/reply layers cost there; the admin port keeps fastify).
 *
 * It is the door of README "Bounds": everything that reaches a gate has origin-form target, a
 * verified key when auth is on, a body within limits.maxBodyBytes and the byte budget, read
 * within limits.requestTimeout. Whatever is refused gets an OpenAI-shaped answer from the error
 * vocabulary; a connection is only cut when nothing can be said on it any more.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { BlockList, Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import type { FastifyBaseLogger } from "fastify";
import type { ApiKeys } from "../auth/api-keys.js";
import { formatDuration } from "../config/units.js";
import { ColdfrontError } from "../errors.js";
import type { Gate } from "../hold/gate.js";
import type { ByteBudget } from "../limits/byte-budget.js";
import type { ObserverFactory } from "../observe/observer.js";
import { type BodyLimits, hasBody, readBody } from "./body.js";
import { clientAddress, normalizeAddress, peerTrusted } from "./client-address.js";
import { Exchange } from "./exchange.js";
import type { Router } from "./router.js";

export interface ClientServerOptions {
  readonly router: Router<Gate>;
  readonly maxBodyBytes: number;
  /** limits.requestTimeout: the body must arrive within it of the headers. */
  readonly requestTimeout: number;
  readonly maxConnections: number | undefined;
  readonly budget: ByteBudget;
  readonly auth: ApiKeys | undefined;
  /** trustedProxies; undefined when none are configured. */
  readonly trusted: BlockList | undefined;
  readonly log: FastifyBaseLogger;
  readonly startedAt: Date;
  /** True once SIGTERM began: answer shutting_down instead of routing. */
  readonly shuttingDown: () => boolean;
  /** Request logs and traces; undefined when neither is on (the warm path then pays nothing). */
  readonly observe?: ObserverFactory | undefined;
}

/** Headers must be complete within this (or requestTimeout, if shorter): slowloris's bound. */
const HEADERS_TIMEOUT = 10_000;
/**
 * Longer than common load balancers' idle timeout (60 s, AWS ALB), so that they close idle
 * connections first and never send a request into one we are closing.
 */
const KEEP_ALIVE_TIMEOUT = 65_000;
/**
 * A refused request's unread body is discarded for at most this long, then the socket is cut
 * (nginx's lingering_time is 30 s too): long enough for a slow client to finish sending and read
 * the answer instead of a reset.
 */
const LINGER = 30_000;
/** A Host that can route: a DNS name or IPv4 address, or a bracketed IPv6 one, and a port. */
const HOST =
  /^(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*\.?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;
/** Past maxConnections by this many more, new sockets are closed without an answer (fd safety). */
const CONNECTION_SLACK = 64;

export interface ClientServer {
  readonly server: Server;
  listen(host: string, port: number): Promise<void>;
  /** Stop accepting; resolves once every connection has ended. */
  close(): Promise<void>;
}

/** Sockets over maxConnections, answered 503 on their first request and closed. */
const overCap = new WeakSet<Socket>();

export function createClientServer(o: ClientServerOptions): ClientServer {
  const headersTimeout = Math.min(HEADERS_TIMEOUT, o.requestTimeout);
  const bodyLimits: BodyLimits = { maxBodyBytes: o.maxBodyBytes, budget: o.budget };
  const models = o.router.models;
  const modelsBody = JSON.stringify({
    object: "list",
    data: models.map((id) => ({
      id,
      object: "model",
      created: Math.floor(o.startedAt.getTime() / 1000),
      owned_by: "coldfront",
    })),
  });

  const dispatch = (
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | undefined,
    reserved: number,
    arrivedAt: number,
    keyId: string | undefined,
  ): void => {
    const remote = req.socket.remoteAddress;
    const trustedPeer = peerTrusted(o.trusted, remote);
    const observer = o.observe === undefined ? undefined : o.observe.start(factsOf(req, arrivedAt));
    const ex = new Exchange({
      method: req.method as string,
      url: req.url as string,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body,
      remoteAddress: remote === undefined ? undefined : normalizeAddress(remote),
      trustedPeer,
      identity:
        keyId !== undefined
          ? `key:${keyId}`
          : `addr:${clientAddress(remote, req.headers["x-forwarded-for"], trustedPeer ? o.trusted : undefined)}`,
      res,
      arrivedAt,
      budget: o.budget,
      reserved,
      observer,
    });
    const routed = o.router.route({
      host: req.headers.host,
      url: ex.url,
      hasBody: body !== undefined,
      json: () => ex.json(),
    });
    if (routed instanceof ColdfrontError) {
      ex.outcome = routed.type;
      ex.fail(routed);
    } else {
      observer?.routed(routed.name);
      routed.handle(ex);
    }
  };

  /** A refusal at the door, with a request line for the request log when it is on. */
  const refuseAndObserve = (
    req: IncomingMessage,
    res: ServerResponse,
    err: ColdfrontError,
    close: boolean,
    arrivedAt: number,
  ): void => {
    refuse(req, res, err, close);
    if (o.observe !== undefined) {
      o.observe.start(factsOf(req, arrivedAt))?.finished({
        status: err.status,
        outcome: err.type,
        bytesIn: 0,
        bytesOut: 0,
        heldMs: 0,
        upstreamMs: undefined,
      });
    }
  };

  const handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const arrivedAt = performance.now();
    const url = req.url as string;
    // Origin-form only (RFC 9112 §3.2.1): an absolute-form target would carry an authority of
    // the client's choosing to the gateway, and bypass pathPrefixes and the /v1/models answer.
    if (url.charCodeAt(0) !== 47) {
      refuseAndObserve(
        req,
        res,
        new ColdfrontError("invalid_request", "the request target must be a path (origin-form)"),
        true,
        arrivedAt,
      );
      return;
    }
    const bad = malformed(req);
    if (bad !== undefined) {
      refuseAndObserve(req, res, new ColdfrontError("invalid_request", bad), true, arrivedAt);
      return;
    }
    if (overCap.has(req.socket)) {
      refuseAndObserve(
        req,
        res,
        new ColdfrontError("queue_full", "coldfront has as many client connections as it accepts"),
        true,
        arrivedAt,
      );
      return;
    }
    if (o.shuttingDown()) {
      refuseAndObserve(
        req,
        res,
        new ColdfrontError("shutting_down", "coldfront is shutting down; retry to reach another replica"),
        true,
        arrivedAt,
      );
      return;
    }
    let keyId: string | undefined;
    if (o.auth !== undefined) {
      keyId = o.auth.verify(req.headers);
      if (keyId === undefined) {
        refuseAndObserve(
          req,
          res,
          new ColdfrontError("invalid_api_key", "a valid API key is required"),
          false,
          arrivedAt,
        );
        return;
      }
    }
    // DESIGN.md step 2: answered from config, warm or cold, waking nothing.
    if (
      models.length > 0 &&
      req.method === "GET" &&
      (url === "/v1/models" || url.startsWith("/v1/models?"))
    ) {
      req.resume();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(modelsBody);
      return;
    }
    if (!hasBody(req)) {
      dispatch(req, res, undefined, 0, arrivedAt, keyId);
      return;
    }
    readBody(req, bodyLimits, (r) => {
      if (r.kind === "ok") dispatch(req, res, r.body, r.reserved, arrivedAt, keyId);
      else if (r.kind === "refused") refuseAndObserve(req, res, r.error, false, arrivedAt);
      // "gone": the client closed mid-body; there is no one to answer.
    });
  };

  // One request's or one socket's failure must never end the process: it holds every cold
  // request of its targets. A bug met here costs that connection only, and is logged.
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      handleRequest(req, res);
    } catch (err) {
      o.log.error({ err: (err as Error).message, stack: (err as Error).stack }, "request handling failed");
      res.destroy();
    }
  };

  const server = createServer(
    {
      headersTimeout,
      // Headers and body within it, checked per connection on Node's tick below: no timer per
      // request on the warm path. The clientError handler answers 408 in our vocabulary.
      requestTimeout: o.requestTimeout,
      // Node's default tick of 30 s would let both timeouts overrun by that much.
      connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(headersTimeout / 4))),
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT,
      // Checked in onRequest, so the 400 is in our vocabulary.
      requireHostHeader: false,
    },
    onRequest,
  );

  let open = 0;
  server.on("connection", (socket: Socket) => {
    open++;
    socket.once("close", () => {
      open--;
    });
    const max = o.maxConnections;
    if (max !== undefined && open > max) {
      if (open > max + CONNECTION_SLACK) socket.destroy();
      else overCap.add(socket);
    }
  });

  // Parse errors and timeouts. Node's parser cannot go on after one, so the connection ends; what
  // can still be said on it is said first.
  const failed = new WeakSet<Duplex>();
  const handleClientError = (err: Error & { code?: string }, socket: Duplex): void => {
    // The parser reports again for every later read; the first report decided.
    if (failed.has(socket)) return;
    failed.add(socket);
    // Node sets it to null once a response is detached: null and undefined alike mean none.
    const res = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
    if (err.code === "ECONNRESET" || err.code === "EPIPE" || !socket.writable) {
      socket.destroy();
      return;
    }
    if (res !== undefined) {
      const req = res.req;
      if (!req.complete && !res.headersSent) {
        // The error is in this request's own body (bad chunking, or it came too slowly): its
        // ServerResponse can still answer. The body reader returns its bytes when the request
        // closes, which it does once the answer is out.
        refuse(
          req,
          res,
          err.code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? new ColdfrontError(
                "request_timeout",
                `the request did not arrive within ${formatDuration(o.requestTimeout)} (limits.requestTimeout)`,
              )
            : new ColdfrontError("invalid_request", `malformed request body (${err.code ?? "parse error"})`),
          true,
        );
        res.once("finish", () => req.destroy());
        setTimeout(() => socket.destroy(), 1000).unref();
      } else if (req.complete) {
        // Garbage after a complete request (pipelined, or after an HTTP/1.0 one): that request's
        // answer still goes out, then the connection closes. Nothing more is read meanwhile.
        socket.pause();
        const close = () => {
          socket.end();
          setTimeout(() => socket.destroy(), 1000).unref();
        };
        if (res.writableFinished) close();
        else res.once("close", close);
      } else socket.destroy();
      return;
    }
    const e =
      err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? new ColdfrontError("request_timeout", "the request headers did not arrive in time")
        : err.code === "HPE_HEADER_OVERFLOW"
          ? new ColdfrontError("invalid_request", "the request headers are too large")
          : new ColdfrontError("invalid_request", `malformed HTTP request (${err.code ?? "parse error"})`);
    socket.end(e.rawResponse());
    setTimeout(() => socket.destroy(), 1000).unref();
  };

  server.on("clientError", (err: Error & { code?: string }, socket: Duplex) => {
    try {
      handleClientError(err, socket);
    } catch (e) {
      o.log.error({ err: (e as Error).message, stack: (e as Error).stack }, "client error handling failed");
      socket.destroy();
    }
  });

  // An Expect other than 100-continue: Node's own answer would be a bodiless 417. RFC 9110 §10.1.1
  // lets a server ignore an expectation it does not support; the request is handled as any other
  // (and Expect is never forwarded, src/proxy/headers.ts).
  server.on("checkExpectation", onRequest);

  // CONNECT carries an authority-form target: never proxied (origin-form only, as above).
  server.on("connect", (_req: IncomingMessage, socket: Duplex) => {
    const e = new ColdfrontError("invalid_request", "the request target must be a path (origin-form)");
    socket.end(e.rawResponse());
    setTimeout(() => socket.destroy(), 1000).unref();
  });

  return {
    server,
    listen: (host, port) =>
      new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once("error", onError);
        server.listen({ host, port }, () => {
          server.off("error", onError);
          resolve();
        });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

/**
 * What RFC 9112 makes a 400 that Node's parser lets through; undefined when the request may pass.
 * Each is a way to make coldfront and the gateway behind it read one request two ways.
 */
function malformed(req: IncomingMessage): string | undefined {
  if (req.httpVersionMajor !== 1) return "only HTTP/1.0 and HTTP/1.1 are served here";
  const host = req.headers.host;
  // §3.2: a 1.1 request needs exactly one valid Host (Node keeps the first of several).
  if (host === undefined) {
    if (req.httpVersionMinor === 1) return "an HTTP/1.1 request needs a Host header";
  } else if (!HOST.test(host)) return "the Host header is not a host name or address with an optional port";
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === "host" && ++hosts > 1) return "more than one Host header";
  }
  // §6.3: chunked is the only coding coldfront can take off; another one (gzip, chunked) would be
  // passed on still coded but without saying so.
  const te = req.headers["transfer-encoding"];
  if (te !== undefined && te.trim().toLowerCase() !== "chunked")
    return "only Transfer-Encoding: chunked is accepted";
  return undefined;
}

function factsOf(req: IncomingMessage, arrivedAt: number) {
  const url = req.url as string;
  const q = url.indexOf("?");
  return {
    method: req.method as string,
    path: q < 0 ? url : url.slice(0, q),
    headers: req.headers,
    arrivedAt,
  };
}

/**
 * Answers a request that will not be routed. With `close`, the connection ends after it (a
 * timeout, a shed connection); otherwise it stays usable and the unread rest of the body is
 * discarded, for at most LINGER, so the client reads our answer instead of a reset.
 */
function refuse(req: IncomingMessage, res: ServerResponse, err: ColdfrontError, close: boolean): void {
  if (close) res.shouldKeepAlive = false;
  // This answer ends the connection (ours, or the client's Connection: close / HTTP/1.0).
  if (!res.shouldKeepAlive && !req.complete) lingerBeforeClose(req.socket);
  res.writeHead(err.status, err.headers());
  res.end(err.body());
  if (req.complete) return;
  req.removeAllListeners("data");
  req.resume();
  const timer = setTimeout(() => {
    if (!req.complete) req.socket.destroy();
  }, LINGER);
  timer.unref();
  req.once("end", () => clearTimeout(timer));
  req.once("close", () => clearTimeout(timer));
}

/**
 * RFC 9112 §9.6: a server that closes while the client is still sending makes the client's
 * kernel answer the rest with a reset, which can destroy our answer before the client read it.
 * Node closes at once after an answer with Connection: close; for this one socket it half-closes
 * instead (our FIN after the answer), keeps discarding what arrives, and closes when the client
 * does or after LINGER.
 */
function lingerBeforeClose(socket: Socket): void {
  socket.destroySoon = function lingeringDestroySoon(this: Socket): void {
    if (this.writable) this.end();
    const timer = setTimeout(() => this.destroy(), LINGER);
    timer.unref();
    this.once("end", () => this.destroy());
    this.once("close", () => clearTimeout(timer));
    this.resume();
  };
}
