/**
 * Wires one coldfront process: a gate per target with its readiness (and pause) source, the
 * client listener, the admin port, and the optional KEDA gRPC scaler.
 */
import type { AddressInfo } from "node:net";
import type { KubeConfig } from "@kubernetes/client-node";
import Fastify, { type FastifyBaseLogger } from "fastify";
import { readinessReport } from "./admin/readiness.js";
import { createAdminServer } from "./admin/server.js";
import { ApiKeys } from "./auth/api-keys.js";
import { type Config, trustedProxyList } from "./config/schema.js";
import { ConfigError } from "./errors.js";
import { Gate } from "./hold/gate.js";
import { GateRegistry } from "./hold/registry.js";
import { ByteBudget } from "./limits/byte-budget.js";
import { composeObservers } from "./observe/compose.js";
import type { ObserverFactory } from "./observe/observer.js";
import { requestLog } from "./observe/request-log.js";
import { createTracing } from "./observe/tracing.js";
import { ColdSignals, DEFAULT_OVERLOAD_SIGNALS } from "./proxy/cold-signals.js";
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
  /** Where the OTEL_* variables are read (README "Observing requests"); process.env by default. */
  readonly env?: NodeJS.ProcessEnv;
  /** One more observer of every request, beside request logs and traces (tests, embedders). */
  readonly observe?: ObserverFactory;
}

export interface App {
  readonly clientUrl: string;
  readonly adminUrl: string;
  readonly scalerAddress: string | undefined;
  readonly hub: SignalHub;
  readonly registry: GateRegistry;
  readonly budget: ByteBudget;
  readonly log: FastifyBaseLogger;
  /**
   * SIGTERM: stop accepting, let held requests be released and streams finish within
   * shutdown.gracePeriod, answer what is still held or still waiting for a head with
   * shutting_down, then stop everything.
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

/**
 * A port that cannot be bound is a configuration problem: one line naming the key and the
 * address, exit code 2 (src/cli.ts), instead of a stack trace.
 */
export async function bindOrExplain(
  key: string,
  address: { host: string; port: number },
  listen: () => Promise<unknown>,
): Promise<void> {
  try {
    await listen();
  } catch (err) {
    // gRPC's bind error carries the system error in its message only.
    const code =
      (err as { code?: unknown }).code ??
      /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL)\b/.exec((err as Error).message ?? "")?.[1];
    const where = `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
    if (code === "EADDRINUSE")
      throw new ConfigError(`${key}: ${where} is already in use (another coldfront still running?)`);
    if (code === "EACCES")
      throw new ConfigError(`${key}: no permission to listen on ${where} (ports below 1024 need privileges)`);
    if (code === "EADDRNOTAVAIL")
      throw new ConfigError(`${key}: ${address.host} is not an address of this machine`);
    throw err;
  }
}

export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.logger ?? Fastify({ logger: { level: config.log.level } }).log;
  const startedAt = new Date();
  const kube = new KubeConfigProvider(options.kubeConfig);
  const registry = new GateRegistry();
  const budget = new ByteBudget(config.limits.maxHeldBytes);
  const metrics = new Metrics(registry, () => budget.used);
  const auth = config.auth ? await ApiKeys.load(config.auth.apiKeys.file, log) : undefined;
  const observers: ObserverFactory[] = [];
  if (config.log.requests) observers.push(requestLog(log, config.log.requestSample));
  // Off unless the OTEL_* variables ask; when off, no OpenTelemetry module is loaded.
  const tracing = await createTracing(options.env ?? process.env, log);
  if (tracing) observers.push(tracing);
  if (options.observe) observers.push(options.observe);
  const observe = composeObservers(observers);
  const sources: ReadinessSource[] = [];
  const pauses: PauseSource[] = [];
  const forwarders: Forwarder[] = [];
  const wakers: { stop(): Promise<void> }[] = [];
  const targetsForReadiness: { name: string; source: ReadinessSource; pause: PauseSource | undefined }[] = [];
  let shuttingDown = false;
  /** The client port is bound (the admin port listens first, so /readyz must wait for it). */
  let listening = false;

  const routed: { config: (typeof config.targets)[number]; target: Gate }[] = [];
  for (const target of config.targets) {
    const source = await createReadinessSource(target, log, kube);
    const pause = await createPauseSource(target, log, kube);
    const forwarder = new Forwarder({
      upstream: target.upstream,
      coldSignals: new ColdSignals(target.coldSignals),
      overloadSignals: new ColdSignals(target.overloadSignals, DEFAULT_OVERLOAD_SIGNALS),
      idleTimeout: config.limits.upstreamIdleTimeout,
      headersTimeout: config.limits.upstreamHeadersTimeout,
    });
    // Loaded only when configured: it brings in @kubernetes/client-node.
    const waker = target.wake
      ? await (await import("./wake/index.js")).createScaleWaker(target, log, kube, pause)
      : undefined;
    if (waker) wakers.push(waker);
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
      waker,
    });
    registry.add(gate);
    sources.push(source);
    if (pause) pauses.push(pause);
    forwarders.push(forwarder);
    routed.push({ config: target, target: gate });
    targetsForReadiness.push({ name: target.name, source, pause });
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
    processStatus: () => ({
      heldBytes: budget.used,
      maxHeldBytes: budget.max,
      refusedOverBudget: budget.refused,
    }),
    // DESIGN.md "Admin surface": listeners up, each target's readiness source has answered once.
    isReady: () =>
      readinessReport({ shuttingDown: shuttingDown || !listening, targets: targetsForReadiness }),
  });
  const client = createClientServer({
    router: new Router(routed),
    maxBodyBytes: config.limits.maxBodyBytes,
    requestTimeout: config.limits.requestTimeout,
    maxConnections: config.limits.maxConnections,
    budget,
    auth,
    trusted: config.trustedProxies.length > 0 ? trustedProxyList(config.trustedProxies) : undefined,
    log,
    startedAt,
    shuttingDown: () => shuttingDown,
    observe,
  });

  const cleanupOnFailure = async () => {
    auth?.stop();
    await Promise.allSettled([
      observe?.stop(),
      admin.close(),
      client.close(),
      ...sources.map((s) => s.stop()),
      ...pauses.map((p) => p.stop()),
      ...wakers.map((w) => w.stop()),
      cluster.stop(),
    ]);
  };
  let scaler: { address: string; close(): Promise<void> } | undefined;
  try {
    await bindOrExplain("admin", config.admin, () =>
      admin.listen({ host: config.admin.host, port: config.admin.port }),
    );
    await bindOrExplain("listen", config.listen, () => client.listen(config.listen.host, config.listen.port));
    listening = true;
    if (config.scaler) {
      const { startGrpcScaler } = await import("./scaling/grpc-scaler.js");
      const listen = config.scaler.listen;
      await bindOrExplain("scaler.listen", listen, async () => {
        scaler = await startGrpcScaler({ listen, hub: registry, cluster, log });
      });
    }
  } catch (err) {
    await cleanupOnFailure();
    throw err;
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
      const busy = () => registry.targets().some((g) => g.held > 0 || g.inFlight > 0);
      while (busy() && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
      }
      // Grace is over: everyone still waiting for an answer gets one before connections are cut.
      for (const g of registry.targets()) {
        g.rejectHeld("shutting_down", "coldfront is shutting down; retry to reach another replica");
      }
      // Let those answers reach the sockets before the cut.
      await new Promise((r) => setImmediate(r));
      client.server.closeAllConnections();
      await Promise.all(forwarders.map((f) => f.destroy()));
      await closed;
      for (const g of registry.targets()) g.close();
      auth?.stop();
      await Promise.allSettled([
        observe?.stop(),
        admin.close(),
        scaler?.close(),
        cluster.stop(),
        ...sources.map((s) => s.stop()),
        ...pauses.map((p) => p.stop()),
        ...wakers.map((w) => w.stop()),
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
    registry,
    budget,
    log,
    shutdown,
    close: () => shutdown(0),
  };
}
