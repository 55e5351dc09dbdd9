/**
 * OpenTelemetry tracing (README "Observing requests"): off unless the standard OTEL_* variables
 * ask for it, and then one span tree per request (src/observe/spans.ts).
 *
 * This module only reads the environment. It imports nothing from OpenTelemetry at run time: the
 * SDK, the exporter and their protobuf and gRPC code load through the dynamic import below, and
 * only when tracing is on, so a plain proxy neither pays their start-up nor holds them in memory
 * (DESIGN.md "Request lifecycle" step 3: the warm path must cost close to nothing). The one
 * OpenTelemetry module a plain coldfront loads is @opentelemetry/api, and that comes from
 * prom-client (its exemplars), not from here.
 *
 * The variables are the specification's ("OpenTelemetry Environment Variable Specification" and
 * "OTLP Exporter Configuration"), read from the `env` given, not from process.env, so that tests
 * and embedders can pass their own. The only exception is what the exporters read by themselves and
 * coldfront does not pass on: the TLS files (OTEL_EXPORTER_OTLP_CERTIFICATE, ..._CLIENT_KEY,
 * ..._CLIENT_CERTIFICATE) and, for gRPC, OTEL_EXPORTER_OTLP_INSECURE, which come from process.env,
 * the same thing in a running coldfront.
 */
import type { FastifyBaseLogger } from "fastify";
import type { ObserverFactory } from "./observer.js";

/** OTEL_EXPORTER_OTLP_PROTOCOL; the specification's default is http/protobuf. */
export type OtlpProtocol = "http/protobuf" | "http/json" | "grpc";

/** OTEL_TRACES_SAMPLER values coldfront supports (the specification's built-in samplers). */
export type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio";

/** Everything the tracer needs, read and checked once, at start. */
export interface TracingSettings {
  readonly protocol: OtlpProtocol;
  /** The full URL to export to; undefined: the exporter's default (localhost:4318 or :4317). */
  readonly url: string | undefined;
  /** OTEL_EXPORTER_OTLP_HEADERS and ..._TRACES_HEADERS, decoded. Never logged: they carry keys. */
  readonly headers: Readonly<Record<string, string>>;
  /** Per export request, ms; undefined: the exporter's default (10 s). */
  readonly timeoutMs: number | undefined;
  readonly compression: "gzip" | "none" | undefined;
  /** OTEL_BSP_*: the BatchSpanProcessor's bounded queue. */
  readonly batch: {
    readonly maxQueueSize: number;
    readonly maxExportBatchSize: number;
    readonly scheduledDelayMillis: number;
    readonly exportTimeoutMillis: number;
  };
  readonly sampler: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG for the ratio samplers, in [0, 1]. */
  readonly ratio: number;
  /** OTEL_SERVICE_NAME, else service.name of OTEL_RESOURCE_ATTRIBUTES, else "coldfront". */
  readonly serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES, decoded. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
}

const SAMPLERS: ReadonlySet<string> = new Set<SamplerName>([
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
]);

/** A set variable's trimmed value; the specification treats an empty value as unset. */
function value(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === "" ? undefined : v;
}

/** A comma-separated list, lower-cased, empty items dropped. */
function list(env: NodeJS.ProcessEnv, name: string): string[] {
  return (value(env, name) ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
}

/**
 * Reads tracing's settings from the environment; undefined when tracing is off. Nothing here
 * throws: the specification asks an SDK to warn about a value it cannot use and carry on.
 */
export function tracingSettings(env: NodeJS.ProcessEnv, log: FastifyBaseLogger): TracingSettings | undefined {
  if (value(env, "OTEL_SDK_DISABLED")?.toLowerCase() === "true") return undefined;

  // The specification's default for OTEL_TRACES_EXPORTER is "otlp"; coldfront's is "off unless
  // asked", and setting an OTLP endpoint is asking.
  const exporters = list(env, "OTEL_TRACES_EXPORTER");
  const endpoint =
    value(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") !== undefined ||
    value(env, "OTEL_EXPORTER_OTLP_ENDPOINT") !== undefined;
  if (exporters.length > 0) {
    if (exporters.includes("none")) {
      if (exporters.length > 1)
        log.warn({ OTEL_TRACES_EXPORTER: exporters }, "OTEL_TRACES_EXPORTER lists none: tracing stays off");
      return undefined;
    }
    const unsupported = exporters.filter((e) => e !== "otlp");
    if (unsupported.length > 0)
      log.warn(
        { OTEL_TRACES_EXPORTER: unsupported },
        exporters.includes("otlp")
          ? "unsupported trace exporter ignored: coldfront exports OTLP only"
          : "unsupported trace exporter: coldfront exports OTLP only, so tracing stays off",
      );
    if (!exporters.includes("otlp")) return undefined;
  } else if (!endpoint) {
    return undefined;
  }

  const protocol = otlpProtocol(env, log);
  const url = exportUrl(env, protocol, log);
  if (url === null) return undefined;
  const sampler = samplerName(env, log);
  const resourceAttributes = keyValues(env, "OTEL_RESOURCE_ATTRIBUTES", log) ?? {};
  const maxQueueSize = count(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1, log);
  return {
    protocol,
    url,
    headers: {
      ...keyValues(env, "OTEL_EXPORTER_OTLP_HEADERS", log),
      ...keyValues(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", log),
    },
    timeoutMs:
      positive(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", log) ??
      positive(env, "OTEL_EXPORTER_OTLP_TIMEOUT", log),
    compression:
      compression(env, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", log) ??
      compression(env, "OTEL_EXPORTER_OTLP_COMPRESSION", log),
    batch: {
      maxQueueSize,
      // The specification: a batch larger than the queue is the queue.
      maxExportBatchSize: Math.min(maxQueueSize, count(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1, log)),
      scheduledDelayMillis: count(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, 0, log),
      exportTimeoutMillis: count(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000, 1, log),
    },
    sampler,
    ratio: sampler.endsWith("traceidratio") ? samplerRatio(env, log) : 1,
    serviceName: value(env, "OTEL_SERVICE_NAME") ?? resourceAttributes["service.name"] ?? "coldfront",
    resourceAttributes,
  };
}

function otlpProtocol(env: NodeJS.ProcessEnv, log: FastifyBaseLogger): OtlpProtocol {
  const name = value(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const p = value(env, name)?.toLowerCase() ?? "http/protobuf";
  if (p === "http/protobuf" || p === "http/json" || p === "grpc") return p;
  log.warn({ [name]: p }, "unknown OTLP protocol: using http/protobuf");
  return "http/protobuf";
}

/**
 * The specification: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the URL as it stands; the generic
 * OTEL_EXPORTER_OTLP_ENDPOINT is a base to which OTLP/HTTP appends v1/traces (gRPC uses it as
 * is). Null: not an http(s) URL, and tracing stays off rather than export somewhere else.
 */
function exportUrl(
  env: NodeJS.ProcessEnv,
  protocol: OtlpProtocol,
  log: FastifyBaseLogger,
): string | null | undefined {
  const specific = value(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const generic = value(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  const name = specific !== undefined ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" : "OTEL_EXPORTER_OTLP_ENDPOINT";
  const raw = specific ?? generic;
  if (raw === undefined) return undefined;
  // The gRPC exporter also takes a bare host:port, which it dials with TLS.
  const bare = protocol === "grpc" && !raw.includes("://");
  let url: URL | undefined;
  try {
    url = new URL(bare ? `https://${raw}` : raw);
  } catch {}
  // The value is not logged: a URL may carry credentials.
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    log.warn(`${name} is not an http:// or https:// URL: tracing stays off`);
    return null;
  }
  if (bare) return raw;
  if (specific === undefined && protocol !== "grpc") {
    url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/traces`;
  }
  return url.href;
}

/**
 * The W3C Baggage-like `key=value,key=value` lists of OTEL_EXPORTER_OTLP_HEADERS and
 * OTEL_RESOURCE_ATTRIBUTES, values percent-decoded. A list that does not parse is dropped whole,
 * as the specification asks for OTEL_RESOURCE_ATTRIBUTES. Values never reach the log.
 */
function keyValues(
  env: NodeJS.ProcessEnv,
  name: string,
  log: FastifyBaseLogger,
): Record<string, string> | undefined {
  const raw = value(env, name);
  if (raw === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const item of raw.split(",")) {
    if (item.trim() === "") continue;
    const eq = item.indexOf("=");
    try {
      if (eq <= 0) throw new Error("no key=value");
      const key = decodeURIComponent(item.slice(0, eq).trim());
      if (key === "") throw new Error("empty key");
      out[key] = decodeURIComponent(item.slice(eq + 1).trim());
    } catch {
      log.warn({ variable: name }, `${name} is not a list of key=value (percent-encoded): ignored`);
      return undefined;
    }
  }
  return out;
}

function positive(env: NodeJS.ProcessEnv, name: string, log: FastifyBaseLogger): number | undefined {
  const raw = value(env, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (Number.isFinite(n) && n > 0) return n;
  log.warn({ [name]: raw }, `${name} must be a positive number of milliseconds: ignored`);
  return undefined;
}

function count(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min: number,
  log: FastifyBaseLogger,
): number {
  const raw = value(env, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (Number.isInteger(n) && n >= min) return n;
  log.warn({ [name]: raw }, `${name} must be an integer of at least ${min}: using ${fallback}`);
  return fallback;
}

function compression(
  env: NodeJS.ProcessEnv,
  name: string,
  log: FastifyBaseLogger,
): "gzip" | "none" | undefined {
  const raw = value(env, name)?.toLowerCase();
  if (raw === undefined || raw === "gzip" || raw === "none") return raw;
  log.warn({ [name]: raw }, `${name} must be gzip or none: ignored`);
  return undefined;
}

function samplerName(env: NodeJS.ProcessEnv, log: FastifyBaseLogger): SamplerName {
  const raw = value(env, "OTEL_TRACES_SAMPLER")?.toLowerCase();
  if (raw === undefined) return "parentbased_always_on";
  if (SAMPLERS.has(raw)) return raw as SamplerName;
  log.warn({ OTEL_TRACES_SAMPLER: raw }, "unsupported sampler: using parentbased_always_on");
  return "parentbased_always_on";
}

function samplerRatio(env: NodeJS.ProcessEnv, log: FastifyBaseLogger): number {
  const raw = value(env, "OTEL_TRACES_SAMPLER_ARG");
  if (raw === undefined) return 1;
  const n = Number(raw);
  if (Number.isFinite(n) && n >= 0 && n <= 1) return n;
  log.warn({ OTEL_TRACES_SAMPLER_ARG: raw }, "OTEL_TRACES_SAMPLER_ARG must be a ratio in [0, 1]: using 1");
  return 1;
}

/**
 * The tracer behind the exchange observer, or undefined when the environment does not ask for
 * tracing (then no OpenTelemetry SDK module is loaded).
 *
 * @example
 * const tracing = await createTracing(process.env, log); // OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318
 * const observer = tracing?.start({ method, path, headers, arrivedAt: performance.now() });
 */
export async function createTracing(
  env: NodeJS.ProcessEnv,
  log: FastifyBaseLogger,
): Promise<ObserverFactory | undefined> {
  const settings = tracingSettings(env, log);
  if (settings === undefined) return undefined;
  const { startTracer } = await import("./spans.js");
  return startTracer(settings, log);
}
