/**
 * The client listener. fastify reads the body (bounded, kept for replay) and routes; the
 * handler then hijacks the reply so the upstream's bytes go straight to the socket.
 */
import type { IncomingMessage } from "node:http";
import { performance } from "node:perf_hooks";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from "fastify";
import { ColdfrontError } from "../errors.js";
import type { Gate } from "../hold/gate.js";
import { Exchange } from "./exchange.js";
import type { Router } from "./router.js";

export interface ClientServerOptions {
  readonly router: Router<Gate>;
  readonly maxBodyBytes: number;
  readonly log: FastifyBaseLogger;
  readonly startedAt: Date;
  /** True once SIGTERM began: answer shutting_down instead of routing. */
  readonly shuttingDown: () => boolean;
}

function fromFastifyError(err: { code?: string; statusCode?: number; message: string }): ColdfrontError {
  if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE" || err.statusCode === 413) {
    return new ColdfrontError(
      "body_too_large",
      "the request body is larger than this server accepts (limits.maxBodyBytes)",
    );
  }
  return new ColdfrontError("invalid_request", err.message);
}

export function createClientServer(o: ClientServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: o.log,
    // Per-request logs cost throughput on the warm path and would carry URLs; lifecycle events
    // (holds, readiness, timeouts) are logged by the gates instead.
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger either: nothing logs per request here, and one is an allocation
    // per request on the warm path.
    childLoggerFactory: (logger) => logger,
    bodyLimit: o.maxBodyBytes,
    // fastify's own 503 on close is not in our vocabulary; shutdown answers are ours.
    return503OnClosing: false,
    // Longer than common load balancers' idle timeout (60 s), so they close first.
    keepAliveTimeout: 65_000,
  });

  // Bodies stay raw bytes: they are replayed as received, never re-serialized.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req: FastifyRequest, body: Buffer, done) => {
    done(null, body);
  });

  const modelsBody = JSON.stringify({
    object: "list",
    data: o.router.models.map((id) => ({
      id,
      object: "model",
      created: Math.floor(o.startedAt.getTime() / 1000),
      owned_by: "coldfront",
    })),
  });

  app.setErrorHandler((err, _req, reply) => {
    const e = fromFastifyError(err as { code?: string; statusCode?: number; message: string });
    reply.code(e.status).headers(e.headers()).send(e.body());
  });
  app.setNotFoundHandler((_req, reply) => {
    const e = new ColdfrontError("no_route", "no target serves this request");
    reply.code(e.status).headers(e.headers()).send(e.body());
  });

  app.all("/*", (request, reply) => {
    reply.hijack();
    const raw: IncomingMessage = request.raw;
    const body = request.body as Buffer | undefined;
    const ex = new Exchange({
      method: raw.method as string,
      url: raw.url as string,
      headers: raw.headers,
      rawHeaders: raw.rawHeaders,
      body: body !== undefined && body.length > 0 ? body : undefined,
      remoteAddress: raw.socket.remoteAddress,
      res: reply.raw,
      arrivedAt: performance.now(),
    });
    if (o.shuttingDown()) {
      ex.fail(
        new ColdfrontError("shutting_down", "coldfront is shutting down; retry to reach another replica"),
      );
      return;
    }
    // DESIGN.md step 2: answered from config, warm or cold, waking nothing.
    if (
      o.router.models.length > 0 &&
      ex.method === "GET" &&
      (ex.url === "/v1/models" || ex.url.startsWith("/v1/models?"))
    ) {
      reply.raw.writeHead(200, { "content-type": "application/json" });
      reply.raw.end(modelsBody);
      return;
    }
    const routed = o.router.route({
      host: raw.headers.host,
      url: ex.url,
      hasBody: ex.body !== undefined,
      json: () => ex.json(),
    });
    if (routed instanceof ColdfrontError) ex.fail(routed);
    else routed.handle(ex);
  });

  return app;
}
