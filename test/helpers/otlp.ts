/**
 * A small OTLP trace receiver for tests, standing in for an OpenTelemetry Collector: OTLP/HTTP
 * (`POST /v1/traces`, JSON or protobuf, gzip or not) on a node:http server, or OTLP/gRPC
 * (TraceService/Export) on a @grpc/grpc-js server, both on 127.0.0.1 ephemeral ports. It decodes
 * what the exporter sends into flat spans with hex ids, as a collector's debug exporter shows them.
 *
 * Protobuf is decoded with protobufjs from the subset of opentelemetry-proto written below (field
 * numbers as in opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto); fields
 * not listed are skipped as unknown, which protobuf allows.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import {
  Server as GrpcServer,
  type Metadata,
  ServerCredentials,
  type ServiceDefinition,
} from "@grpc/grpc-js";
import protobuf from "protobufjs";

const OTLP_TRACE_PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  string name = 5;
  int32 kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  Status status = 15;
  fixed32 flags = 16;
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
`;

const ExportRequest = protobuf.parse(OTLP_TRACE_PROTO).root.lookupType("otlp.ExportTraceServiceRequest");

/** opentelemetry-proto's SpanKind and Status.StatusCode numbers, as names. */
const KINDS = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"] as const;
const STATUS = ["UNSET", "OK", "ERROR"] as const;

export type AttributeValue = string | number | boolean | AttributeValue[];

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** "" for a span without a parent. */
  readonly parentSpanId: string;
  readonly traceState: string;
  readonly name: string;
  readonly kind: (typeof KINDS)[number];
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  readonly status: { readonly code: (typeof STATUS)[number]; readonly message: string };
  readonly resource: Readonly<Record<string, AttributeValue>>;
  readonly scope: string;
}

export interface ReceivedRequest {
  readonly transport: "http" | "grpc";
  readonly path: string;
  readonly contentType: string | undefined;
  readonly contentEncoding: string | undefined;
  /** Request headers (HTTP) or metadata (gRPC), lower-case names, first value. */
  readonly headers: Readonly<Record<string, string>>;
}

// The decoded request in OTLP/JSON's shape (protobufjs' toObject gives the same camelCase keys).
interface WireAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: WireAnyValue[] };
  bytesValue?: string | Uint8Array;
}
interface WireKeyValue {
  key: string;
  value?: WireAnyValue;
}
interface WireSpan {
  traceId?: string | Uint8Array;
  spanId?: string | Uint8Array;
  parentSpanId?: string | Uint8Array;
  traceState?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: WireKeyValue[];
  status?: { message?: string; code?: number };
}
interface WireRequest {
  resourceSpans?: {
    resource?: { attributes?: WireKeyValue[] };
    scopeSpans?: { scope?: { name?: string }; spans?: WireSpan[] }[];
  }[];
}

/** OTLP/JSON writes ids as hex strings, protobuf as bytes. */
function hex(id: string | Uint8Array | undefined): string {
  if (id === undefined) return "";
  return typeof id === "string" ? id.toLowerCase() : Buffer.from(id).toString("hex");
}

function anyValue(v: WireAnyValue | undefined): AttributeValue {
  if (v === undefined) return "";
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(anyValue);
  if (v.bytesValue !== undefined) return hex(v.bytesValue);
  return "";
}

function attributes(kvs: WireKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

function flatten(req: WireRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          traceState: s.traceState ?? "",
          name: s.name ?? "",
          kind: KINDS[s.kind ?? 0] ?? "UNSPECIFIED",
          startNs: BigInt(s.startTimeUnixNano ?? 0),
          endNs: BigInt(s.endTimeUnixNano ?? 0),
          attributes: attributes(s.attributes),
          status: { code: STATUS[s.status?.code ?? 0] ?? "UNSET", message: s.status?.message ?? "" },
          resource,
          scope: ss.scope?.name ?? "",
        });
      }
    }
  }
  return out;
}

function decodeProtobuf(body: Uint8Array): WireRequest {
  return ExportRequest.toObject(ExportRequest.decode(body), { longs: String }) as WireRequest;
}

function firstValues(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    const first = Array.isArray(v) ? v[0] : v;
    if (first !== undefined) out[k] = first;
  }
  return out;
}

function metadataValues(md: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = typeof v === "string" ? v : v.toString("utf8");
  return out;
}

const TRACE_SERVICE: ServiceDefinition = {
  Export: {
    path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    // An empty ExportTraceServiceResponse is zero bytes on the wire: a full success.
    responseSerialize: () => Buffer.alloc(0),
    responseDeserialize: () => ({}),
  },
};

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly requests: ReceivedRequest[] = [];
  readonly transport: "http" | "grpc";
  #http: Server | undefined;
  #grpc: GrpcServer | undefined;
  #port = 0;

  private constructor(transport: "http" | "grpc") {
    this.transport = transport;
  }

  /** The base endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT takes it. */
  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** OTLP/HTTP: answers POST /v1/traces with 200 (an empty, fully successful response). */
  static async http(): Promise<OtlpReceiver> {
    const r = new OtlpReceiver("http");
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (req.method !== "POST" || req.url !== "/v1/traces") {
          res.writeHead(404).end();
          return;
        }
        let body = Buffer.concat(chunks);
        const encoding = req.headers["content-encoding"];
        const type = req.headers["content-type"];
        try {
          if (encoding === "gzip") body = gunzipSync(body);
          const decoded = type?.startsWith("application/json")
            ? (JSON.parse(body.toString("utf8")) as WireRequest)
            : decodeProtobuf(body);
          r.requests.push({
            transport: "http",
            path: req.url,
            contentType: type,
            contentEncoding: encoding,
            headers: firstValues(req.headers),
          });
          r.spans.push(...flatten(decoded));
        } catch (err) {
          res.writeHead(400, { "content-type": "text/plain" }).end(String(err));
          return;
        }
        if (type?.startsWith("application/json")) {
          res.writeHead(200, { "content-type": "application/json" }).end("{}");
        } else {
          res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    r.#http = server;
    r.#port = (server.address() as AddressInfo).port;
    return r;
  }

  /** OTLP/gRPC: opentelemetry.proto.collector.trace.v1.TraceService/Export, without TLS. */
  static async grpc(): Promise<OtlpReceiver> {
    const r = new OtlpReceiver("grpc");
    const server = new GrpcServer();
    server.addService(TRACE_SERVICE, {
      Export: (call: { request: Buffer; metadata: Metadata }, done: (err: null, res: object) => void) => {
        r.requests.push({
          transport: "grpc",
          path: TRACE_SERVICE.Export?.path ?? "",
          contentType: undefined,
          contentEncoding: undefined,
          headers: metadataValues(call.metadata),
        });
        r.spans.push(...flatten(decodeProtobuf(call.request)));
        done(null, {});
      },
    });
    r.#port = await new Promise<number>((resolve, reject) => {
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      );
    });
    r.#grpc = server;
    return r;
  }

  async stop(): Promise<void> {
    const http = this.#http;
    this.#http = undefined;
    if (http) {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
    const grpc = this.#grpc;
    this.#grpc = undefined;
    grpc?.forceShutdown();
  }
}

/**
 * The spans as an indented tree, children in start order, one line each with its kind, duration,
 * status and attributes (resource attributes left out): for failure messages and README.
 */
export function renderSpanTree(spans: readonly ReceivedSpan[]): string {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, ReceivedSpan[]>();
  for (const s of spans) {
    const parent = ids.has(s.parentSpanId) ? s.parentSpanId : "";
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  for (const list of children.values()) list.sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
  const lines: string[] = [];
  const line = (s: ReceivedSpan, prefix: string, branch: string) => {
    const ms = Number(s.endNs - s.startNs) / 1e6;
    const attrs = Object.entries(s.attributes)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(" ");
    const status =
      s.status.code === "UNSET" ? "" : ` ${s.status.code}${s.status.message ? `(${s.status.message})` : ""}`;
    const parent = branch === "" && s.parentSpanId !== "" ? ` (parent ${s.parentSpanId})` : "";
    lines.push(`${prefix}${branch}${s.name} [${s.kind}] ${ms.toFixed(1)} ms${status}${parent}  ${attrs}`);
    const kids = children.get(s.spanId) ?? [];
    const next = prefix + (branch === "" ? "" : branch === "└─ " ? "   " : "│  ");
    for (const [i, k] of kids.entries()) line(k, next, i === kids.length - 1 ? "└─ " : "├─ ");
  };
  for (const root of children.get("") ?? []) line(root, "", "");
  return lines.join("\n");
}
