/**
 * The admin port (DESIGN.md "Admin surface"): never the client port, so scrapes and probes
 * never queue behind client traffic and clients never reach /metrics.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import { ColdfrontError } from "../errors.js";
import type { GateRegistry } from "../hold/registry.js";
import type { Metrics } from "../scaling/metrics.js";
import type { ClusterDemand } from "../scaling/signals.js";
import { renderStatusPage, STATUS_PAGE_HEADERS, type StatusSnapshot } from "./status-page.js";

export interface AdminOptions {
  readonly registry: GateRegistry;
  readonly metrics: Metrics;
  readonly cluster: ClusterDemand;
  readonly log: FastifyBaseLogger;
  /** Listeners up and every readiness source synced; false while shutting down. */
  readonly isReady: () => { ready: boolean; reasons: string[] };
  readonly startedAt: Date;
  /** Process-wide facts for /status (the byte budget). */
  readonly processStatus?: () => Record<string, unknown>;
}

export function createAdminServer(o: AdminOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: o.log,
    logController: new LogController({ disableRequestLogging: true }),
  });

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    const r = o.isReady();
    reply.code(r.ready ? 200 : 503);
    return { ready: r.ready, reasons: r.reasons };
  });

  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", o.metrics.registry.contentType);
    return o.metrics.registry.metrics();
  });

  // One snapshot for the JSON and the HTML page, so the page shows exactly what /status says.
  const status = (): StatusSnapshot => ({
    startedAt: o.startedAt.toISOString(),
    ...o.processStatus?.(),
    // Gate.status() is typed loosely; the page reads it as untrusted JSON, missing fields as "—".
    targets: Object.fromEntries(
      o.registry.targets().map((g) => [g.name, g.status()]),
    ) as unknown as StatusSnapshot["targets"],
  });

  app.get("/status", async () => status());

  app.get("/", async (_req, reply) =>
    reply.type("text/html; charset=utf-8").headers(STATUS_PAGE_HEADERS).send(renderStatusPage(status())),
  );

  // Demand without a request (README "Long cold starts"): a UI can warm a model when a user opens
  // a chat page. Admin port only, so clients of the proxy port can never wake anything this way.
  app.post<{ Params: { name: string } }>("/targets/:name/wake", async (req, reply) => {
    const gate = o.registry.get(req.params.name);
    if (!gate) {
      const e = new ColdfrontError("no_route", `unknown target '${req.params.name}'`);
      reply.code(e.status).headers(e.headers());
      return reply.send(e.body());
    }
    gate.wake();
    reply.code(202);
    return { target: gate.name, state: gate.state, pending: gate.pending, wake: gate.status().wake };
  });

  // KEDA metrics-api trigger. Without ?scope=local: the sum over all replicas; with it: this
  // replica alone, which is what peers ask each other (scaling/peers.ts).
  app.get<{ Params: { name: string }; Querystring: { scope?: string } }>(
    "/keda/targets/:name",
    async (req, reply) => {
      const gate = o.registry.get(req.params.name);
      if (!gate) {
        const e = new ColdfrontError("no_route", `unknown target '${req.params.name}'`);
        reply.code(e.status).headers(e.headers());
        return reply.send(e.body());
      }
      const local = req.query.scope === "local";
      const totals = local ? { pending: gate.pending, inFlight: gate.inFlight } : o.cluster.totals(gate.name);
      return { target: gate.name, pending: totals.pending, inFlight: totals.inFlight, ready: gate.ready };
    },
  );

  return app;
}
