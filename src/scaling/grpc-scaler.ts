/**
 * KEDA's external-push scaler (DESIGN.md "Scaling signals"): a gRPC server on `scaler.listen`
 * implementing `externalscaler.ExternalScaler` from proto/externalscaler.proto. No Prometheus in
 * the wake path: StreamIsActive pushes `true` the moment a request is held here, so KEDA wakes
 * the model within about a second instead of a scrape plus a poll.
 *
 * The target is the trigger metadata key `target`. Every value is the ClusterDemand total, so
 * whichever replica KEDA talks to answers for all of them.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { FastifyBaseLogger } from "fastify";
import type { ClusterDemand, SignalHub, TargetSignals } from "./signals.js";

// src/scaling/ under vitest and dist/scaling/ after tsc are both two levels below the repo root.
const PROTO_PATH = fileURLToPath(new URL("../../proto/externalscaler.proto", import.meta.url));

/** DESIGN.md: GetMetricSpec's target size without `targetPendingRequests`. */
export const DEFAULT_TARGET_PENDING = 5;

export interface GrpcScalerOptions {
  readonly listen: { readonly host: string; readonly port: number };
  readonly hub: SignalHub;
  readonly cluster: ClusterDemand;
  readonly log: FastifyBaseLogger;
  /**
   * StreamIsActive re-sends the current value this often, ms (default 5000): it keeps KEDA's
   * stream (and every proxy on the way) from idling out and is how falls are reported.
   */
  readonly keepaliveInterval?: number;
  /**
   * How often an open stream re-reads the cluster totals, ms (default 500, the peer poll period),
   * so that a request held by another replica wakes the model without waiting for the keep-alive.
   */
  readonly checkInterval?: number;
  /** close(): how long calls may take to finish before the server is forced down, ms (default 2000). */
  readonly shutdownTimeout?: number;
}

export interface GrpcScaler {
  /** host:port actually bound, e.g. "127.0.0.1:40123". */
  readonly address: string;
  /** Ends open streams (KEDA reconnects, to another replica) and stops the server, bounded. */
  close(): Promise<void>;
}

interface ScaledObjectRef {
  name: string;
  namespace: string;
  scalerMetadata: Record<string, string>;
}
interface GetMetricsRequest {
  scaledObjectRef: ScaledObjectRef | null;
  metricName: string;
}
interface IsActiveResponse {
  result: boolean;
}
interface GetMetricSpecResponse {
  metricSpecs: { metricName: string; targetSize: number; targetSizeFloat: number }[];
}
interface GetMetricsResponse {
  metricValues: { metricName: string; metricValue: number; metricValueFloat: number }[];
}

/** A trigger that names no target, an unknown one, or a bad target size: KEDA shows the details. */
class TriggerError extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, message: string) {
    super(message);
    this.code = code;
  }
  toStatus(): Partial<grpc.StatusObject> {
    return { code: this.code, details: this.message };
  }
}

/**
 * Starts the gRPC server and resolves once it is bound.
 *
 * @example
 * const scaler = await startGrpcScaler({ listen: { host: "0.0.0.0", port: 9091 }, hub, cluster, log });
 * // ScaledObject trigger: type external-push, metadata {scalerAddress: "coldfront:9091", target: "llama"}
 * await scaler.close();
 */
export async function startGrpcScaler(o: GrpcScalerOptions): Promise<GrpcScaler> {
  const definition = await protoLoader.load(PROTO_PATH, {
    keepCase: true,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    externalscaler: { ExternalScaler: grpc.ServiceClientConstructor };
  };
  const log = o.log.child({ component: "grpc-scaler" });
  const server = new grpc.Server({
    // Notice a KEDA that vanished without closing its stream, so its listener and timer go.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
  });
  const streams = new Set<ActivityStream>();
  const warned = new Set<string>();

  const fail = (method: string, err: unknown): Partial<grpc.StatusObject> => {
    if (err instanceof TriggerError) {
      // KEDA asks every polling interval: say a misconfigured trigger once, not forever.
      if (warned.size < 100 && !warned.has(err.message)) {
        warned.add(err.message);
        log.warn({ method, err: err.message }, "KEDA trigger rejected");
      }
      return err.toStatus();
    }
    log.error({ method, err: (err as Error).message }, "KEDA call failed");
    return { code: grpc.status.INTERNAL, details: (err as Error).message };
  };
  const active = (target: string): boolean => {
    const t = o.cluster.totals(target);
    return t.pending > 0 || t.inFlight > 0;
  };

  const implementation: grpc.UntypedServiceImplementation = {
    IsActive(
      call: grpc.ServerUnaryCall<ScaledObjectRef, IsActiveResponse>,
      callback: grpc.sendUnaryData<IsActiveResponse>,
    ) {
      try {
        callback(null, { result: active(targetOf(o.hub, call.request)) });
      } catch (err) {
        callback(fail("IsActive", err));
      }
    },

    GetMetricSpec(
      call: grpc.ServerUnaryCall<ScaledObjectRef, GetMetricSpecResponse>,
      callback: grpc.sendUnaryData<GetMetricSpecResponse>,
    ) {
      try {
        const target = targetOf(o.hub, call.request);
        const size = targetSizeOf(call.request);
        callback(null, {
          metricSpecs: [
            {
              metricName: metricName(target),
              targetSize: Math.max(1, Math.round(size)),
              targetSizeFloat: size,
            },
          ],
        });
      } catch (err) {
        callback(fail("GetMetricSpec", err));
      }
    },

    GetMetrics(
      call: grpc.ServerUnaryCall<GetMetricsRequest, GetMetricsResponse>,
      callback: grpc.sendUnaryData<GetMetricsResponse>,
    ) {
      try {
        const target = targetOf(o.hub, call.request.scaledObjectRef);
        const pending = o.cluster.totals(target).pending;
        // KEDA asks by the name GetMetricSpec gave, minus its "sN-" prefix; echo what it asked,
        // since a target has exactly one metric and KEDA matches the answer by that name.
        const name = call.request.metricName || metricName(target);
        callback(null, {
          metricValues: [{ metricName: name, metricValue: pending, metricValueFloat: pending }],
        });
      } catch (err) {
        callback(fail("GetMetrics", err));
      }
    },

    StreamIsActive(call: grpc.ServerWritableStream<ScaledObjectRef, IsActiveResponse>) {
      let target: string;
      try {
        target = targetOf(o.hub, call.request);
      } catch (err) {
        call.emit("error", fail("StreamIsActive", err));
        return;
      }
      const stream = new ActivityStream(call, target, {
        hub: o.hub,
        active,
        keepaliveInterval: o.keepaliveInterval ?? 5000,
        checkInterval: o.checkInterval ?? 500,
        log,
        onEnd: (s) => streams.delete(s),
      });
      streams.add(stream);
    },
  };
  server.addService(pkg.externalscaler.ExternalScaler.service, implementation);

  // grpc-js writes its own diagnostics to stderr; they belong in our log (a failed bind is
  // reported once, by the caller, naming the config key).
  grpc.setLogger({
    error: (...args: unknown[]) => o.log.debug({ grpc: args.map(String).join(" ") }, "grpc-js"),
  } as unknown as Partial<Console>);
  const host = o.listen.host.includes(":") ? `[${o.listen.host}]` : o.listen.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${o.listen.port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  const address = `${host}:${port}`;
  log.info({ address }, "KEDA external scaler listening");

  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= (async () => {
        // A stream never ends by itself; end them with OK so KEDA sees EOF and reconnects at once.
        for (const s of [...streams]) s.end();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, o.shutdownTimeout ?? 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
      })();
      return closing;
    },
  };
}

/** DESIGN.md: the one metric of a target. */
function metricName(target: string): string {
  return `pending-${target}`;
}

function targetOf(hub: SignalHub, ref: ScaledObjectRef | null | undefined): string {
  const configured = hub
    .targets()
    .map((t) => t.name)
    .join(", ");
  const target = ref?.scalerMetadata?.target?.trim();
  if (!target) {
    throw new TriggerError(
      grpc.status.INVALID_ARGUMENT,
      `trigger metadata "target" is required: the coldfront target to scale (configured: ${configured})`,
    );
  }
  if (!hub.get(target)) {
    throw new TriggerError(
      grpc.status.NOT_FOUND,
      `trigger metadata "target": no coldfront target named '${target}' (configured: ${configured})`,
    );
  }
  return target;
}

function targetSizeOf(ref: ScaledObjectRef): number {
  const raw = ref.scalerMetadata?.targetPendingRequests;
  if (raw === undefined || raw.trim() === "") return DEFAULT_TARGET_PENDING;
  const size = /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(size > 0)) {
    throw new TriggerError(
      grpc.status.INVALID_ARGUMENT,
      `trigger metadata "targetPendingRequests" must be a positive number, got "${raw}"`,
    );
  }
  return size;
}

interface ActivityStreamOptions {
  readonly hub: SignalHub;
  readonly active: (target: string) => boolean;
  readonly keepaliveInterval: number;
  readonly checkInterval: number;
  readonly log: FastifyBaseLogger;
  readonly onEnd: (s: ActivityStream) => void;
}

/**
 * One open StreamIsActive call. It sends the current value at once; then a rise (inactive to
 * active) as soon as it happens: synchronously from the hub for this replica's own requests, on
 * the next check for peers'; and the current value on every keep-alive tick, which is also when
 * a fall is reported. Falls wait for the tick on purpose: on a warm target the in-flight count
 * flips 0/1 with every request, and pushing each flip would have KEDA act on each one, while
 * scale-in waits for the ScaledObject's cooldownPeriod anyway.
 */
class ActivityStream {
  readonly #call: grpc.ServerWritableStream<ScaledObjectRef, IsActiveResponse>;
  readonly #target: string;
  readonly #o: ActivityStreamOptions;
  /** The last value sent. */
  #last: boolean | undefined;
  #lastSentAt = 0;
  #ended = false;
  readonly #unsubscribe: () => void;
  readonly #timer: NodeJS.Timeout;

  constructor(
    call: grpc.ServerWritableStream<ScaledObjectRef, IsActiveResponse>,
    target: string,
    o: ActivityStreamOptions,
  ) {
    this.#call = call;
    this.#target = target;
    this.#o = o;
    this.#unsubscribe = o.hub.onChange(this.#onChange);
    this.#timer = setInterval(() => this.#check(), o.checkInterval);
    const cleanup = () => this.#cleanup();
    call.once("cancelled", cleanup);
    call.once("close", cleanup);
    call.once("finish", cleanup);
    call.on("error", cleanup);
    o.log.debug({ target, peer: call.getPeer() }, "KEDA StreamIsActive opened");
    this.#send(this.#o.active(target));
  }

  /** Ends the call with OK (server shutdown). */
  end(): void {
    if (this.#ended) return;
    this.#cleanup();
    this.#call.end();
  }

  /** Runs on the proxy's hot path for every count change: cheap, and it must never throw. */
  readonly #onChange = (t: TargetSignals): void => {
    if (this.#last || t.name !== this.#target || (t.pending === 0 && t.inFlight === 0)) return;
    try {
      this.#send(true);
    } catch (err) {
      this.#o.log.debug({ err: (err as Error).message }, "StreamIsActive push failed");
    }
  };

  #check(): void {
    try {
      const now = this.#o.active(this.#target);
      if (performance.now() - this.#lastSentAt >= this.#o.keepaliveInterval) this.#send(now);
      else if (now && !this.#last) this.#send(true);
    } catch (err) {
      this.#o.log.debug({ err: (err as Error).message }, "StreamIsActive check failed");
    }
  }

  #send(result: boolean): void {
    if (this.#ended || this.#call.cancelled || this.#call.writableEnded) return;
    this.#last = result;
    this.#lastSentAt = performance.now();
    this.#call.write({ result });
  }

  #cleanup(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#unsubscribe();
    clearInterval(this.#timer);
    this.#o.onEnd(this);
    this.#o.log.debug({ target: this.#target }, "KEDA StreamIsActive closed");
  }
}
