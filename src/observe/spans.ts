/**
 * One span tree per request (README "Observing requests"), exported over OTLP:
 *
 *   POST /v1/chat/completions   SERVER, joins the client's trace (W3C traceparent)
 *   ├── hold                    INTERNAL, once per stay in the queue
 *   ├── upstream                CLIENT, one per attempt; its context goes upstream as traceparent,
 *   ├── hold                    so vLLM's own spans become its children
 *   └── upstream
 *
 * Loaded only when tracing is on (src/observe/tracing.ts). Parents are passed explicitly
 * (trace.setSpan on a context held by the exchange), never through context.with or
 * AsyncLocalStorage: nothing is installed into the hot path's async machinery, and no context
 * manager is registered. No attribute carries a header value, a query string or a body.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import {
  type Attributes,
  type Context,
  defaultTextMapGetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from "@opentelemetry/core";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_PATH,
} from "@opentelemetry/semantic-conventions";
import type { FastifyBaseLogger } from "fastify";
import type { ExchangeFacts, ExchangeObserver, FinishedFacts, ObserverFactory } from "./observer.js";
import type { TracingSettings } from "./tracing.js";

/** The specification's default exporter timeout, the bound of a flush at shutdown. */
const DEFAULT_EXPORT_TIMEOUT_MS = 10_000;

// HTTP semantic conventions still in "development" status: not exported by the package's stable
// entry point, and its docs advise copying such names rather than importing the incubating one.
const ATTR_HTTP_REQUEST_BODY_SIZE = "http.request.body.size";
const ATTR_HTTP_RESPONSE_BODY_SIZE = "http.response.body.size";

// coldfront's own attributes (README "Observing requests" lists them).
const ATTR_TARGET = "coldfront.target";
const ATTR_OUTCOME = "coldfront.outcome";
const ATTR_HELD_MS = "coldfront.hold.held_ms";
const ATTR_HOLD_POSITION = "coldfront.hold.position";
const ATTR_HOLD_OUTCOME = "coldfront.hold.outcome";
const ATTR_ATTEMPT = "coldfront.upstream.attempt";
const ATTR_COLD_SIGNAL = "coldfront.upstream.cold_signal";
const ATTR_TIME_TO_HEAD_MS = "coldfront.upstream.time_to_head_ms";
const ATTR_RESULT = "coldfront.upstream.result";

const propagator = new W3CTraceContextPropagator();

/** Injects into the flat [name, value, ...] list that the forwarder appends to its headers. */
const listSetter: TextMapSetter<string[]> = {
  set(carrier, key, value) {
    carrier.push(key, value);
  },
};

/** What a forward result kind says about the attempt, for its span's status. */
const FAILED_KINDS: ReadonlySet<string> = new Set(["cold", "failed", "broken", "timeout"]);

class ExchangeSpans implements ExchangeObserver {
  readonly #tracer: Tracer;
  readonly #root: Span;
  /** The root span as parent of the children. */
  readonly #parent: Context;
  readonly #method: string;
  #target: string | undefined;
  #hold: Span | undefined;
  #upstream: Span | undefined;
  #attemptAt = 0;

  constructor(tracer: Tracer, root: Span, method: string) {
    this.#tracer = tracer;
    this.#root = root;
    this.#parent = trace.setSpan(ROOT_CONTEXT, root);
    this.#method = method;
  }

  routed(target: string): void {
    this.#target = target;
    this.#root.setAttribute(ATTR_TARGET, target);
  }

  held(position: number): void {
    this.#hold?.end();
    const attributes: Attributes = { [ATTR_HOLD_POSITION]: position };
    if (this.#target !== undefined) attributes[ATTR_TARGET] = this.#target;
    this.#hold = this.#tracer.startSpan("hold", { kind: SpanKind.INTERNAL, attributes }, this.#parent);
  }

  holdEnded(outcome: string, heldMs: number): void {
    const hold = this.#hold;
    if (hold === undefined) return;
    this.#hold = undefined;
    // heldMs is the request's total so far (a replay sent back to the queue holds again); the
    // span's own duration is this stay.
    hold.setAttribute(ATTR_HOLD_OUTCOME, outcome);
    hold.setAttribute(ATTR_HELD_MS, Math.round(heldMs));
    hold.end();
  }

  attemptStarted(attempt: number): readonly string[] {
    this.#upstream?.end();
    const span = this.#tracer.startSpan(
      "upstream",
      {
        kind: SpanKind.CLIENT,
        attributes: { [ATTR_ATTEMPT]: attempt, [ATTR_HTTP_REQUEST_METHOD]: this.#method },
      },
      this.#parent,
    );
    this.#upstream = span;
    this.#attemptAt = performance.now();
    const headers: string[] = [];
    propagator.inject(trace.setSpan(this.#parent, span), headers, listSetter);
    return headers;
  }

  attemptHead(status: number): void {
    const span = this.#upstream;
    if (span === undefined) return;
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    span.setAttribute(ATTR_TIME_TO_HEAD_MS, Math.round(performance.now() - this.#attemptAt));
    // HTTP semantic conventions: on a CLIENT span, 4xx and 5xx are errors.
    if (status >= 400) span.setStatus({ code: SpanStatusCode.ERROR });
  }

  attemptEnded(kind: string, coldReason?: string): void {
    const span = this.#upstream;
    if (span === undefined) return;
    this.#upstream = undefined;
    span.setAttribute(ATTR_RESULT, kind);
    if (coldReason !== undefined) span.setAttribute(ATTR_COLD_SIGNAL, coldReason);
    if (FAILED_KINDS.has(kind)) {
      // A cold attempt is an error of that attempt (DESIGN.md step 6 sends it back to the queue);
      // the root span says whether the request as a whole succeeded.
      const type = coldReason ?? kind;
      span.setAttribute(ATTR_ERROR_TYPE, type);
      span.setStatus({ code: SpanStatusCode.ERROR, message: type });
    }
    span.end();
  }

  finished(f: FinishedFacts): void {
    const end = performance.now();
    // The exchange is over: whatever is still open ends with it, saying how.
    if (this.#hold !== undefined) {
      this.#hold.setAttribute(ATTR_HOLD_OUTCOME, f.outcome);
      this.#hold.end(end);
      this.#hold = undefined;
    }
    if (this.#upstream !== undefined) {
      this.#upstream.setAttribute(ATTR_RESULT, "unfinished");
      this.#upstream.end(end);
      this.#upstream = undefined;
    }
    const root = this.#root;
    // A request no target took (no_route, or refused at the door) may carry any path: name it by
    // its method alone, so arbitrary paths never become span names (url.path keeps the path).
    if (this.#target === undefined) root.updateName(this.#method);
    root.setAttribute(ATTR_OUTCOME, f.outcome);
    // 0: the client went away before any status; no status code to report.
    if (f.status > 0) root.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, f.status);
    if (f.heldMs > 0) root.setAttribute(ATTR_HELD_MS, Math.round(f.heldMs));
    root.setAttribute(ATTR_HTTP_REQUEST_BODY_SIZE, f.bytesIn);
    root.setAttribute(ATTR_HTTP_RESPONSE_BODY_SIZE, f.bytesOut);
    // HTTP semantic conventions: on a SERVER span only 5xx are errors (4xx are the client's).
    if (f.status >= 500) {
      root.setAttribute(ATTR_ERROR_TYPE, f.outcome);
      root.setStatus({ code: SpanStatusCode.ERROR, message: f.outcome });
    }
    root.end(end);
  }
}

function sampler(s: TracingSettings): Sampler {
  switch (s.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(s.ratio);
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(s.ratio) });
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** coldfront's version from its package.json (beside dist/ in the image); undefined if unreadable. */
function packageVersion(): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      name?: string;
      version?: string;
    };
    return pkg.name === "coldfront" ? pkg.version : undefined;
  } catch {
    return undefined;
  }
}

async function otlpExporter(s: TracingSettings): Promise<SpanExporter> {
  const common = {
    ...(s.url !== undefined && { url: s.url }),
    ...(s.timeoutMs !== undefined && { timeoutMillis: s.timeoutMs }),
  };
  if (s.protocol === "grpc") {
    const [{ OTLPTraceExporter }, { Metadata }] = await Promise.all([
      import("@opentelemetry/exporter-trace-otlp-grpc"),
      import("@grpc/grpc-js"),
    ]);
    type Config = NonNullable<ConstructorParameters<typeof OTLPTraceExporter>[0]>;
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(s.headers)) metadata.set(k, v);
    return new OTLPTraceExporter({
      ...common,
      metadata,
      // The exporter's own type is an enum of these same strings.
      ...(s.compression !== undefined && { compression: s.compression as Config["compression"] }),
    });
  }
  const { OTLPTraceExporter } =
    s.protocol === "http/json"
      ? await import("@opentelemetry/exporter-trace-otlp-http")
      : await import("@opentelemetry/exporter-trace-otlp-proto");
  type Config = NonNullable<ConstructorParameters<typeof OTLPTraceExporter>[0]>;
  return new OTLPTraceExporter({
    ...common,
    headers: { ...s.headers },
    ...(s.compression !== undefined && { compression: s.compression as Config["compression"] }),
  });
}

/**
 * The exporter as the batch processor sees it, with two changes:
 * - Exports run on a turn of the event loop of their own. The processor exports from inside
 *   span.end() once a batch is full, and serializing 512 spans there would land on whichever
 *   request ended the 512th.
 * - Failed exports are logged: the SDK reports them only to its diagnostic logger, which nobody
 *   reads. One warning when exports start failing, then at most one a minute while they go on
 *   failing, and a line when they recover, so an unreachable collector is visible without flooding.
 */
class BackgroundExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #log: FastifyBaseLogger;
  #failedBatches = 0;
  #warnedAt = Number.NEGATIVE_INFINITY;

  constructor(inner: SpanExporter, log: FastifyBaseLogger) {
    this.#inner = inner;
    this.#log = log;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    setImmediate(() =>
      this.#inner.export(spans, (result) => {
        this.#report(result, spans.length);
        done(result);
      }),
    );
  }

  #report(result: ExportResult, spans: number): void {
    if (result.code === ExportResultCode.SUCCESS) {
      if (this.#failedBatches > 0)
        this.#log.info({ failedBatches: this.#failedBatches }, "trace export recovered");
      this.#failedBatches = 0;
      return;
    }
    this.#failedBatches++;
    const now = performance.now();
    if (this.#failedBatches === 1 || now - this.#warnedAt >= 60_000) {
      this.#warnedAt = now;
      this.#log.warn(
        { err: result.error?.message, spans, failedBatches: this.#failedBatches },
        "trace export failed; spans dropped",
      );
    }
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** The tracer provider with its batch processor and exporter, as the exchange observer factory. */
export async function startTracer(s: TracingSettings, log: FastifyBaseLogger): Promise<ObserverFactory> {
  const version = packageVersion();
  const attributes: Attributes = { ...s.resourceAttributes, [ATTR_SERVICE_NAME]: s.serviceName };
  if (version !== undefined && attributes[ATTR_SERVICE_VERSION] === undefined)
    attributes[ATTR_SERVICE_VERSION] = version;
  const provider = new TracerProvider({
    resource: defaultResource().merge(resourceFromAttributes(attributes)),
    sampler: sampler(s),
    spanProcessors: [
      new BatchSpanProcessor({ exporter: new BackgroundExporter(await otlpExporter(s), log), ...s.batch }),
    ],
  });
  const tracer = provider.getTracer("coldfront", version);
  log.info(
    {
      protocol: s.protocol,
      // The URL without credentials or query: either may carry a secret.
      endpoint: s.url === undefined ? "(exporter default)" : redactUrl(s.url),
      service: s.serviceName,
      sampler: s.sampler,
    },
    "tracing on: exporting spans over OTLP",
  );

  return {
    start(facts: ExchangeFacts): ExchangeObserver | undefined {
      // The client's traceparent/tracestate make this request's span a child of the client's.
      const parent =
        facts.headers.traceparent === undefined
          ? ROOT_CONTEXT
          : propagator.extract(ROOT_CONTEXT, facts.headers, defaultTextMapGetter);
      // Named "METHOD path": coldfront's paths are a handful of API paths (/v1/chat/completions,
      // /v1/completions, /v1/models, ...), so the name stays low-cardinality; the query string
      // is not part of facts.path.
      const root = tracer.startSpan(
        `${facts.method} ${facts.path}`,
        {
          kind: SpanKind.SERVER,
          startTime: facts.arrivedAt,
          attributes: { [ATTR_HTTP_REQUEST_METHOD]: facts.method, [ATTR_URL_PATH]: facts.path },
        },
        parent,
      );
      // Not sampled: nothing to record, and the client's own traceparent goes upstream unchanged
      // (the forwarder passes it through when no headers come back from attemptStarted).
      if (!root.isRecording()) return undefined;
      return new ExchangeSpans(tracer, root, facts.method);
    },

    async stop(): Promise<void> {
      // Bounded by the exporter's timeout: a collector that is down must not hold up shutdown.
      const bound = s.timeoutMs ?? DEFAULT_EXPORT_TIMEOUT_MS;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), bound);
      });
      // Settled either way, so a flush that fails after the bound is not an unhandled rejection.
      const flushed = provider.shutdown().then(
        () => "flushed" as const,
        (err: unknown) => {
          log.warn({ err: errorText(err) }, "trace flush at shutdown failed; spans dropped");
          return "failed" as const;
        },
      );
      const r = await Promise.race([flushed, late]);
      clearTimeout(timer);
      if (r === "late") log.warn({ timeoutMs: bound }, "trace flush at shutdown timed out; spans dropped");
    },
  };
}

/** The SDK rejects with an Error, or with a list of them (one per span processor). */
function errorText(err: unknown): string {
  if (Array.isArray(err)) return err.map(errorText).join("; ");
  return err instanceof Error ? err.message : String(err);
}

function redactUrl(raw: string): string {
  const u = new URL(raw);
  return `${u.protocol}//${u.host}${u.pathname}`;
}
