/**
 * Wires one coldfront process: a gate per target with its readiness (and pause) source, the
 * client listener, the admin port, and the optional KEDA gRPC scaler.
 */
import type { AddressInfo } from "node:net";
import type { KubeConfig } from "@kubernetes/client-node";
import Fastify, { type FastifyBaseLogger } from "fastify";
import { createAdminServer } from "./admin/server.js";
import type { Config } from "./config/schema.js";
import { Gate } from "./hold/gate.js";
import { GateRegistry } from "./hold/registry.js";
import { ColdSignals } from "./proxy/cold-signals.js";
import { Forwarder } from "./proxy/forward.js";
import { Router } from "./proxy/router.js";
import { createClientServer } from "./proxy/server.js";
import { createPauseSource, createReadinessSource, KubeConfigProvider } from "./readiness/index.js";
import type { PauseSource, ReadinessSource } from "./readiness/source.js";
import { Metrics } from "./scaling/metrics.js";
import { type ClusterDemand, localDemand, type SignalHub } from "./scaling/signals.js";

export interface AppOptions {
  /** A pino logger; by default one at config.log.level on stdout. */
  readonly logger?: FastifyBaseLogger;
  /** For tests against a fake API server; else in-cluster or KUBECONFIG credentials. */
  readonly kubeConfig?: KubeConfig;
}

export interface App {
  readonly clientUrl: string;
  readonly adminUrl: string;
  readonly scalerAddress: string | undefined;
  readonly hub: SignalHub;
  readonly log: FastifyBaseLogger;
  /**
   * SIGTERM: stop accepting, let held requests be released and streams finish within
   * shutdown.gracePeriod, answer what is still held with shutting_down, then stop everything.
   */
  shutdown(gracePeriod?: number): Promise<void>;
  /** shutdown() with no grace: for tests. */
  close(): Promise<void>;
}

function urlOf(address: AddressInfo | string | null, scheme = "http"): string {
  if (address === null || typeof address === "string")
    throw new Error(`unexpected listen address ${address}`);
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}

export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.logger ?? Fastify({ logger: { level: config.log.level } }).log;
  const startedAt = new Date();
  const kube = new KubeConfigProvider(options.kubeConfig);
  const registry = new GateRegistry();
  const metrics = new Metrics(registry);
  const sources: ReadinessSource[] = [];
  const pauses: PauseSource[] = [];
  const forwarders: Forwarder[] = [];
  let shuttingDown = false;

  const routed: { config: (typeof config.targets)[number]; target: Gate }[] = [];
  for (const target of config.targets) {
    const source = await createReadinessSource(target, log, kube);
    const pause = await createPauseSource(target, log, kube);
    const forwarder = new Forwarder({
      upstream: target.upstream,
      coldSignals: new ColdSignals(target.coldSignals),
      idleTimeout: config.limits.upstreamIdleTimeout,
    });
    const gate = new Gate({
      target,
      limits: config.limits,
      hold: config.hold,
      release: config.release,
      source,
      pause,
      forwarder,
      metrics: metrics.forTarget(target.name),
      log,
      notify: registry.notify,
    });
    registry.add(gate);
    sources.push(source);
    if (pause) pauses.push(pause);
    forwarders.push(forwarder);
    routed.push({ config: target, target: gate });
  }

  // Sources start in the background: a cold or unreachable backend is normal, and /readyz
  // reports until each has synced.
  for (const s of [...sources, ...pauses]) {
    s.start().catch((err: Error) =>
      log.error({ err: err.message, source: s.constructor.name }, "readiness source failed to start"),
    );
  }

  let cluster: ClusterDemand = localDemand(registry);
  const adminPort = config.admin.port;
  if (config.scaler?.peers) {
    // Loaded only with peers: discovery brings in @kubernetes/client-node.
    const { createClusterDemand } = await import("./scaling/peers.js");
    cluster = createClusterDemand({
      hub: registry,
      peers: config.scaler.peers,
      kubeConfig: await kube.get(),
      interval: config.scaler.peerInterval,
      staleAfter: config.scaler.peerStaleAfter,
      adminPort,
      log,
    });
  }

  const admin = createAdminServer({
    registry,
    metrics,
    cluster,
    log,
    startedAt,
    isReady: () => {
      const reasons: string[] = [];
      if (shuttingDown) reasons.push("shutting down");
      for (const g of registry.targets()) {
        const s = sources[registry.targets().indexOf(g)];
        if (s && !s.synced) reasons.push(`target '${g.name}': readiness source not synced`);
      }
      for (const p of pauses) if (!p.synced) reasons.push("a ScaledObject watch has not synced");
      return { ready: reasons.length === 0, reasons };
    },
  });
  const client = createClientServer({
    router: new Router(routed),
    maxBodyBytes: config.limits.maxBodyBytes,
    log,
    startedAt,
    shuttingDown: () => shuttingDown,
  });

  await admin.listen({ host: config.admin.host, port: config.admin.port });
  await client.listen({ host: config.listen.host, port: config.listen.port });

  let scaler: { address: string; close(): Promise<void> } | undefined;
  if (config.scaler) {
    const { startGrpcScaler } = await import("./scaling/grpc-scaler.js");
    scaler = await startGrpcScaler({ listen: config.scaler.listen, hub: registry, cluster, log });
  }

  const clientUrl = urlOf(client.server.address());
  const adminUrl = urlOf(admin.server.address());
  log.info(
    {
      listen: clientUrl,
      admin: adminUrl,
      scaler: scaler?.address,
      targets: config.targets.map((t) => t.name),
    },
    "coldfront started",
  );

  let stopping: Promise<void> | undefined;
  const shutdown = (gracePeriod = config.shutdown.gracePeriod): Promise<void> => {
    stopping ??= (async () => {
      shuttingDown = true;
      for (const g of registry.targets()) g.beginShutdown();
      // Stop accepting; idle keep-alive connections go now, busy ones when their answer is out.
      const closed = client.close();
      client.server.closeIdleConnections();
      const deadline = Date.now() + gracePeriod;
      const busy = () => registry.targets().some((g) => g.pending > 0 || g.inFlight > 0);
      while (busy() && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
      }
      for (const g of registry.targets()) {
        g.rejectHeld("shutting_down", "coldfront is shutting down; retry to reach another replica");
      }
      // Grace is over: cut streams still running.
      client.server.closeAllConnections();
      await Promise.all(forwarders.map((f) => f.destroy()));
      await closed;
      for (const g of registry.targets()) g.close();
      await Promise.allSettled([
        admin.close(),
        scaler?.close(),
        cluster.stop(),
        ...sources.map((s) => s.stop()),
        ...pauses.map((p) => p.stop()),
      ]);
      log.info("coldfront stopped");
    })();
    return stopping;
  };

  return {
    clientUrl,
    adminUrl,
    scalerAddress: scaler?.address,
    hub: registry,
    log,
    shutdown,
    close: () => shutdown(0),
  };
}
