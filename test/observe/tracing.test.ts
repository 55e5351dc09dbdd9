/**
 * README "Observing requests": OpenTelemetry traces, off unless the standard OTEL_* variables ask
 * for them; one span tree per request (root SERVER span, `hold` and `upstream` children) in the
 * client's W3C trace, and the upstream span's context sent upstream so vLLM's spans join it.
 * Spans are exported for real, to a receiver on an ephemeral port (test/helpers/otlp.ts).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import { describe, expect, test } from "vitest";
import type { ExchangeObserver, ObserverFactory } from "../../src/observe/observer.js";
import { createTracing, tracingSettings } from "../../src/observe/tracing.js";
import { startTestApp, testLogger, useCleanups, waitFor } from "../helpers/app.js";
import { OtlpReceiver, type ReceivedSpan, renderSpanTree } from "../helpers/otlp.js";
import { Upstream } from "../helpers/upstream.js";

const defer = useCleanups();

const CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN = "b7ad6b7169203331";
const TRACEPARENT = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;
const TRACESTATE = "vendor=opaque";
const SECRETS = ["sk-secret-key", "api_key", "the launch codes"];
const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** A logger whose lines the test can read. */
function capturingLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const log = Fastify({
    logger: { level: "debug", stream: { write: (l: string) => void lines.push(JSON.parse(l)) } },
  }).log;
  return { log, lines, warnings: () => lines.filter((l) => l.level === 40).map((l) => l.msg) };
}

async function tracer(env: NodeJS.ProcessEnv): Promise<ObserverFactory> {
  const f = await createTracing(env, testLogger());
  if (f === undefined) throw new Error("tracing should be on");
  let stopped = false;
  defer(async () => {
    if (!stopped) await f.stop();
  });
  return {
    start: (facts) => f.start(facts),
    stop: async () => {
      stopped = true;
      await f.stop();
    },
  };
}

async function receiver(transport: "http" | "grpc"): Promise<OtlpReceiver> {
  const r = transport === "http" ? await OtlpReceiver.http() : await OtlpReceiver.grpc();
  defer(() => r.stop());
  return r;
}

function startExchange(f: ObserverFactory, headers: Record<string, string> = {}): ExchangeObserver {
  const o = f.start({
    method: "POST",
    path: "/v1/chat/completions",
    headers: {
      traceparent: TRACEPARENT,
      tracestate: TRACESTATE,
      authorization: "Bearer sk-secret-key",
      ...headers,
    },
    arrivedAt: performance.now(),
  });
  if (o === undefined) throw new Error("the request should be traced");
  return o;
}

const num = (s: ReceivedSpan, key: string) => Number(s.attributes[key]);

/**
 * The received spans as the tree the README shows: the root, its children in the order they
 * ended (the batch processor exports in that order), holds in the order they were held (the total
 * held grows) and attempts by number. Start times are no order: the SDK anchors each span to
 * Date.now() on its own, so spans that start within a millisecond may be out of order.
 */
function tree(spans: readonly ReceivedSpan[]) {
  const roots = spans.filter((s) => s.kind === "SERVER");
  expect(roots, renderSpanTree(spans)).toHaveLength(1);
  const root = roots[0] as ReceivedSpan;
  const children = spans.filter((s) => s.parentSpanId === root.spanId);
  return {
    root,
    children,
    holds: children
      .filter((s) => s.name === "hold")
      .sort((a, b) => num(a, "coldfront.hold.held_ms") - num(b, "coldfront.hold.held_ms")),
    upstreams: children
      .filter((s) => s.name === "upstream")
      .sort((a, b) => num(a, "coldfront.upstream.attempt") - num(b, "coldfront.upstream.attempt")),
  };
}

function expectNoSecrets(spans: readonly ReceivedSpan[]): void {
  const text = JSON.stringify(spans.map((s) => [s.name, s.attributes]));
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

const PROTOCOLS = [
  { protocol: "http/json", transport: "http", contentType: "application/json" },
  { protocol: "http/protobuf", transport: "http", contentType: "application/x-protobuf" },
  { protocol: "grpc", transport: "grpc", contentType: undefined },
] as const;

describe("the span tree of a held-then-replayed request", () => {
  test.each(PROTOCOLS)(
    "over $protocol: one trace, the client's; hold and upstream children with their attributes; attempt 2's context goes upstream",
    async ({ protocol, transport, contentType }) => {
      const r = await receiver(transport);
      const f = await tracer({
        OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        // Percent-encoded as the specification writes them; the collector sees them decoded.
        OTEL_EXPORTER_OTLP_HEADERS: "x-collector-key=key%20one",
      });

      // The life the gate gives a request that arrives cold (DESIGN.md steps 4 to 6): held, released,
      // the first replay meets a gateway without endpoints and goes back to the queue, the second
      // gets its answer.
      const o = startExchange(f);
      o.routed("llama");
      o.held(2);
      o.holdEnded("released", 120.4);
      const first = o.attemptStarted(1);
      o.attemptHead(503);
      o.attemptEnded("cold", "no_endpoints");
      o.held(0);
      o.holdEnded("released", 180.6);
      const second = o.attemptStarted(2);
      o.attemptHead(200);
      o.attemptEnded("sent");
      o.finished({
        status: 200,
        outcome: "replayed",
        bytesIn: 64,
        bytesOut: 512,
        heldMs: 180.6,
        upstreamMs: 40,
      });
      // stop() flushes: once it resolves, the receiver has answered the export.
      await f.stop();

      const spans = r.spans;
      const { root, children, holds, upstreams } = tree(spans);
      expect(spans, renderSpanTree(spans)).toHaveLength(5);
      expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([CLIENT_TRACE]));
      expect(children).toHaveLength(4);

      expect(root.name).toBe("POST /v1/chat/completions");
      expect(root.parentSpanId).toBe(CLIENT_SPAN);
      expect(root.traceState).toBe(TRACESTATE);
      expect(root.status.code).toBe("UNSET");
      expect(root.attributes).toMatchObject({
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.response.status_code": 200,
        "coldfront.target": "llama",
        "coldfront.outcome": "replayed",
        "coldfront.hold.held_ms": 181,
      });
      expect(root.resource).toMatchObject({ "service.name": "coldfront", "service.version": VERSION });
      expect(root.scope).toBe("coldfront");

      expect(holds.map((h) => h.kind)).toEqual(["INTERNAL", "INTERNAL"]);
      expect(holds.map((h) => h.attributes)).toEqual([
        {
          "coldfront.target": "llama",
          "coldfront.hold.position": 2,
          "coldfront.hold.outcome": "released",
          "coldfront.hold.held_ms": 120,
        },
        {
          "coldfront.target": "llama",
          "coldfront.hold.position": 0,
          "coldfront.hold.outcome": "released",
          "coldfront.hold.held_ms": 181,
        },
      ]);

      expect(upstreams.map((u) => u.kind)).toEqual(["CLIENT", "CLIENT"]);
      const [u1, u2] = upstreams as [ReceivedSpan, ReceivedSpan];
      expect(u1.attributes).toMatchObject({
        "coldfront.upstream.attempt": 1,
        "coldfront.upstream.cold_signal": "no_endpoints",
        "coldfront.upstream.result": "cold",
        "http.response.status_code": 503,
        "error.type": "no_endpoints",
      });
      expect(u1.status.code).toBe("ERROR");
      expect(u2.attributes).toMatchObject({
        "coldfront.upstream.attempt": 2,
        "coldfront.upstream.result": "sent",
        "http.response.status_code": 200,
        "http.request.method": "POST",
      });
      expect(u2.attributes).not.toHaveProperty("coldfront.upstream.cold_signal");
      expect(typeof u2.attributes["coldfront.upstream.time_to_head_ms"]).toBe("number");
      expect(u2.status.code).toBe("UNSET");
      // One batch, in the order the spans ended: the order the life ran in.
      expect(children.map((c) => c.name)).toEqual(["hold", "upstream", "hold", "upstream"]);

      // What goes upstream: each attempt's own span as the parent, the client's tracestate kept.
      expect(first).toEqual(["traceparent", `00-${CLIENT_TRACE}-${u1.spanId}-01`, "tracestate", TRACESTATE]);
      expect(second).toEqual(["traceparent", `00-${CLIENT_TRACE}-${u2.spanId}-01`, "tracestate", TRACESTATE]);

      expectNoSecrets(spans);
      expect(r.requests.length).toBeGreaterThan(0);
      for (const req of r.requests) {
        expect(req.transport).toBe(transport);
        expect(req.contentType).toBe(contentType);
        expect(req.headers["x-collector-key"]).toBe("key one");
      }
    },
  );

  test("the client leaving while held ends the open hold span with that outcome; a 503 answer marks the root an error", async () => {
    const r = await receiver("http");
    const f = await tracer({ OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" });

    const gone = startExchange(f);
    gone.routed("llama");
    gone.held(0);
    gone.finished({
      status: 0,
      outcome: "client_aborted",
      bytesIn: 10,
      bytesOut: 0,
      heldMs: 0,
      upstreamMs: undefined,
    });

    // No traceparent from this client: a trace of its own.
    const timedOut = f.start({
      method: "POST",
      path: "/v1/completions",
      headers: {},
      arrivedAt: performance.now(),
    });
    if (timedOut === undefined) throw new Error("traced");
    timedOut.routed("llama");
    timedOut.held(0);
    timedOut.holdEnded("cold_start_timeout", 600);
    timedOut.finished({
      status: 503,
      outcome: "cold_start_timeout",
      bytesIn: 10,
      bytesOut: 120,
      heldMs: 600,
      upstreamMs: undefined,
    });
    await f.stop();

    const byTrace = (pred: (s: ReceivedSpan) => boolean) => {
      const root = r.spans.find((s) => s.kind === "SERVER" && pred(s));
      if (!root) throw new Error(renderSpanTree(r.spans));
      return tree(r.spans.filter((s) => s.traceId === root.traceId));
    };
    const a = byTrace((s) => s.attributes["coldfront.outcome"] === "client_aborted");
    expect(a.holds).toHaveLength(1);
    expect(a.holds[0]?.attributes["coldfront.hold.outcome"]).toBe("client_aborted");
    expect(a.root.attributes).not.toHaveProperty("http.response.status_code");
    expect(a.root.status.code).toBe("UNSET");

    const t = byTrace((s) => s.attributes["coldfront.outcome"] === "cold_start_timeout");
    expect(t.root.parentSpanId).toBe("");
    expect(t.root.traceId).not.toBe(CLIENT_TRACE);
    expect(t.holds[0]?.attributes["coldfront.hold.outcome"]).toBe("cold_start_timeout");
    expect(t.root.status).toEqual({ code: "ERROR", message: "cold_start_timeout" });
    expect(t.root.attributes).toMatchObject({
      "http.response.status_code": 503,
      "error.type": "cold_start_timeout",
    });
  });

  test("a request the sampler leaves out gets no observer, so its own traceparent goes upstream unchanged", async () => {
    // Nothing is exported in this test; the endpoint is never dialled.
    const f = await tracer({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" });
    const unsampled = f.start({
      method: "POST",
      path: "/v1/chat/completions",
      headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-00` },
      arrivedAt: performance.now(),
    });
    expect(unsampled).toBeUndefined();
    // The control: the same request with the sampled flag is traced.
    expect(startExchange(f)).toBeDefined();

    const off = await tracer({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
      OTEL_TRACES_SAMPLER: "always_off",
    });
    expect(
      off.start({ method: "GET", path: "/v1/models", headers: {}, arrivedAt: performance.now() }),
    ).toBeUndefined();
  });
});

describe("off unless the environment asks", () => {
  test("off by default, with OTEL_SDK_DISABLED, with OTEL_TRACES_EXPORTER=none; on with an endpoint or otlp", async () => {
    const { log } = capturingLogger();
    expect(await createTracing({}, log)).toBeUndefined();
    expect(
      tracingSettings({ OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_SERVICE_NAME: "x" }, log),
    ).toBeUndefined();
    expect(
      tracingSettings(
        { OTEL_SDK_DISABLED: "TRUE", OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" },
        log,
      ),
    ).toBeUndefined();
    expect(
      tracingSettings(
        { OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" },
        log,
      ),
    ).toBeUndefined();
    // The controls: the same variables that turn it on.
    expect(
      tracingSettings({ OTEL_SDK_DISABLED: "false", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }, log),
    ).toBeDefined();
    expect(
      tracingSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" }, log),
    ).toBeDefined();
    // otlp without an endpoint: the exporter's default (localhost:4318).
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: "otlp" }, log)?.url).toBeUndefined();
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: "otlp" }, log)?.protocol).toBe("http/protobuf");
  });

  test("an exporter or protocol coldfront does not support is a warning: tracing stays off (or on, with what it supports)", () => {
    const c = capturingLogger();
    expect(
      tracingSettings(
        { OTEL_TRACES_EXPORTER: "zipkin", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" },
        c.log,
      ),
    ).toBeUndefined();
    expect(c.warnings()).toEqual([
      "unsupported trace exporter: coldfront exports OTLP only, so tracing stays off",
    ]);

    const both = capturingLogger();
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: "otlp,console" }, both.log)).toBeDefined();
    expect(both.warnings()).toEqual(["unsupported trace exporter ignored: coldfront exports OTLP only"]);

    const proto = capturingLogger();
    expect(
      tracingSettings(
        { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_EXPORTER_OTLP_PROTOCOL: "thrift" },
        proto.log,
      )?.protocol,
    ).toBe("http/protobuf");
    expect(proto.warnings()).toEqual(["unknown OTLP protocol: using http/protobuf"]);

    const bad = capturingLogger();
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318:x" }, bad.log)).toBeUndefined();
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://[" }, bad.log)).toBeUndefined();
    expect(bad.warnings()).toEqual([
      "OTEL_EXPORTER_OTLP_ENDPOINT is not an http:// or https:// URL: tracing stays off",
      "OTEL_EXPORTER_OTLP_ENDPOINT is not an http:// or https:// URL: tracing stays off",
    ]);
  });

  test("the standard variables: endpoint paths, headers, timeout, batch queue, sampler, resource", () => {
    const { log, warnings } = capturingLogger();
    const s = tracingSettings(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/base/",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20t0ken,x-a=1",
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: "x-a=2",
        OTEL_EXPORTER_OTLP_TIMEOUT: "2500",
        OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
        OTEL_BSP_MAX_QUEUE_SIZE: "100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "500",
        OTEL_BSP_SCHEDULE_DELAY: "250",
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.25",
        OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs,k8s.pod.name=coldfront-0",
      },
      log,
    );
    expect(s).toMatchObject({
      protocol: "http/protobuf",
      url: "http://collector:4318/base/v1/traces",
      headers: { authorization: "Bearer t0ken", "x-a": "2" },
      timeoutMs: 2500,
      compression: "gzip",
      batch: {
        maxQueueSize: 100,
        maxExportBatchSize: 100,
        scheduledDelayMillis: 250,
        exportTimeoutMillis: 30_000,
      },
      sampler: "parentbased_traceidratio",
      ratio: 0.25,
      serviceName: "from-attrs",
      resourceAttributes: { "k8s.pod.name": "coldfront-0" },
    });
    expect(warnings()).toEqual([]);

    // The signal-specific endpoint is used as it stands; gRPC takes the generic one as it stands.
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/custom" }, log)?.url).toBe(
      "http://c:4318/custom",
    );
    expect(
      tracingSettings(
        { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" },
        log,
      )?.url,
    ).toBe("http://c:4317/");
    // ... and also a bare host:port.
    expect(
      tracingSettings(
        { OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" },
        log,
      )?.url,
    ).toBe("collector:4317");
    // OTEL_SERVICE_NAME wins over the resource attribute; coldfront is the default.
    expect(
      tracingSettings(
        {
          OTEL_TRACES_EXPORTER: "otlp",
          OTEL_SERVICE_NAME: "edge",
          OTEL_RESOURCE_ATTRIBUTES: "service.name=x",
        },
        log,
      )?.serviceName,
    ).toBe("edge");
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: "otlp" }, log)?.serviceName).toBe("coldfront");
  });

  test("values it cannot use are warnings and defaults, never a secret in the log", () => {
    const { log, lines, warnings } = capturingLogger();
    const s = tracingSettings(
      {
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%ZZsk-secret-key",
        OTEL_BSP_MAX_QUEUE_SIZE: "lots",
        OTEL_TRACES_SAMPLER: "jaeger_remote",
        OTEL_EXPORTER_OTLP_TIMEOUT: "-1",
      },
      log,
    );
    expect(s).toMatchObject({ headers: {}, batch: { maxQueueSize: 2048 }, sampler: "parentbased_always_on" });
    expect(s?.timeoutMs).toBeUndefined();
    expect(warnings()).toHaveLength(4);
    expect(JSON.stringify(lines)).not.toContain("sk-secret-key");
  });

  test("createTracing({}) loads no OpenTelemetry module; with an endpoint it loads the SDK (a child process records what it resolves)", () => {
    // Each case in a fresh Node: the test runner itself has loaded @opentelemetry/api (vitest and
    // prom-client use it), so only a clean process can tell. The child imports this module's
    // source as is (Node strips the types), with a resolve hook that records every
    // @opentelemetry module and maps the sources' .js specifiers to their .ts files.
    const tracing = fileURLToPath(new URL("../../src/observe/tracing.ts", import.meta.url));
    const script = `
      import { registerHooks } from "node:module";
      const loaded = [];
      registerHooks({
        resolve(specifier, context, next) {
          let r;
          try { r = next(specifier, context); }
          catch (err) {
            if (!specifier.startsWith(".") || !specifier.endsWith(".js")) throw err;
            r = next(specifier.slice(0, -3) + ".ts", context);
          }
          const m = /node_modules\\/(@opentelemetry\\/[^/]+)/.exec(r.url);
          if (m && !loaded.includes(m[1])) loaded.push(m[1]);
          return r;
        },
      });
      const log = { info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {}, child() { return log; } };
      const { createTracing } = await import(${JSON.stringify(tracing)});
      const env = JSON.parse(process.argv[1]);
      const f = await createTracing(env, log);
      await f?.stop();
      process.stdout.write(JSON.stringify({ on: f !== undefined, loaded }));
    `;
    const run = (env: Record<string, string>) => {
      const out = spawnSync(process.execPath, ["--input-type=module", "-e", script, JSON.stringify(env)], {
        encoding: "utf8",
        timeout: 20_000,
        env: { PATH: process.env.PATH ?? "" },
      });
      if (out.status !== 0) throw new Error(`child failed: ${out.stderr}`);
      return JSON.parse(out.stdout) as { on: boolean; loaded: string[] };
    };
    expect(run({})).toEqual({ on: false, loaded: [] });
    expect(run({ OTEL_TRACES_EXPORTER: "zipkin" })).toEqual({ on: false, loaded: [] });
    const on = run({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" });
    expect(on.on).toBe(true);
    expect(on.loaded).toEqual(
      expect.arrayContaining(["@opentelemetry/sdk-trace", "@opentelemetry/exporter-trace-otlp-proto"]),
    );
    // http/protobuf does not bring in the other exporters.
    expect(on.loaded).not.toContain("@opentelemetry/exporter-trace-otlp-grpc");
  });
});

describe("through the proxy", () => {
  test("a cold request with a traceparent: held, replayed after a gateway cold answer; the span tree as received, and the upstream saw the second upstream span as parent", async () => {
    const r = await receiver("http");
    // The first request the gateway sees finds no endpoint (Envoy's answer, a known cold signal);
    // then the model answers.
    let answered = 0;
    const up = new Upstream((req, res, body) => {
      if (answered++ === 0) {
        res.writeHead(503, { "content-type": "text/plain" });
        res.end("no healthy upstream");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ url: req.url, bytes: body.length }));
    });
    up.port = await Upstream.reservePort();
    const app = await startTestApp(
      {
        targets: [
          {
            name: "llama",
            upstream: up.url,
            readiness: { probe: { url: `${up.url}/health`, interval: "50ms", heldInterval: "20ms" } },
          },
        ],
      },
      {
        // The spec's default protocol (http/protobuf), and a short batch delay so spans arrive
        // while the app runs.
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_BSP_SCHEDULE_DELAY: "20" },
      },
    );
    defer(async () => {
      await app.close();
      await up.stop();
    });

    const res = fetch(`${app.clientUrl}/v1/chat/completions?api_key=sk-secret-key`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        traceparent: TRACEPARENT,
        tracestate: TRACESTATE,
        authorization: "Bearer sk-secret-key",
      },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "the launch codes" }] }),
    });
    await waitFor(() => app.hub.get("llama")?.pending === 1, "the request held");
    await up.start();
    const answer = await res;
    expect(answer.status).toBe(200);
    await answer.text();

    await waitFor(() => r.spans.some((s) => s.kind === "SERVER"), "the root span exported", 10_000);
    const spans = r.spans;
    const { root, holds, upstreams } = tree(spans);
    expect(new Set(spans.map((s) => s.traceId)), renderSpanTree(spans)).toEqual(new Set([CLIENT_TRACE]));
    expect(root.parentSpanId).toBe(CLIENT_SPAN);
    expect(root.name).toBe("POST /v1/chat/completions");
    expect(root.attributes).toMatchObject({
      "http.request.method": "POST",
      "url.path": "/v1/chat/completions",
      "http.response.status_code": 200,
      "coldfront.target": "llama",
      "coldfront.outcome": "replayed",
    });
    // Held at arrival, and again after the cold answer (DESIGN.md step 6).
    expect(
      holds.map((h) => h.attributes["coldfront.hold.outcome"]),
      renderSpanTree(spans),
    ).toEqual(["released", "released"]);
    expect(holds[0]?.attributes["coldfront.hold.position"]).toBe(0);
    expect(upstreams.map((u) => u.attributes["coldfront.upstream.attempt"])).toEqual([1, 2]);
    const [u1, u2] = upstreams as [ReceivedSpan, ReceivedSpan];
    expect(u1.attributes).toMatchObject({
      "coldfront.upstream.cold_signal": "no_endpoints",
      "http.response.status_code": 503,
    });
    expect(u2.attributes).toMatchObject({
      "http.response.status_code": 200,
      "coldfront.upstream.result": "sent",
    });
    expectNoSecrets(spans);

    // The upstream saw coldfront's spans as parents, not the client's, and the client's tracestate.
    expect(up.seen.map((s) => s.headers.traceparent)).toEqual([
      `00-${CLIENT_TRACE}-${u1.spanId}-01`,
      `00-${CLIENT_TRACE}-${u2.spanId}-01`,
    ]);
    expect(up.seen.map((s) => s.headers.tracestate)).toEqual([TRACESTATE, TRACESTATE]);
  });
});
