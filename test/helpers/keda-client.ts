/**
 * KEDA's side of the external scaler contract, for tests: a real @grpc/grpc-js client generated
 * at runtime from proto/externalscaler.proto (the same file KEDA's numbers were copied into), with
 * promise wrappers and a recorder for StreamIsActive.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { SignalHub, TargetSignals } from "../../src/scaling/signals.js";

const PROTO_PATH = fileURLToPath(new URL("../../proto/externalscaler.proto", import.meta.url));

/** Each unary call gives up after this long, so a broken server fails a test instead of hanging it. */
const CALL_DEADLINE_MS = 5000;

export type Metadata = Record<string, string>;

export interface MetricSpec {
  metricName: string;
  targetSize: number;
  targetSizeFloat: number;
}
export interface MetricValue {
  metricName: string;
  metricValue: number;
  metricValueFloat: number;
}

type Unary<Req, Res> = (
  req: Req,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => grpc.ClientUnaryCall;

interface RawClient extends grpc.Client {
  IsActive: Unary<object, { result: boolean }>;
  GetMetricSpec: Unary<object, { metricSpecs: MetricSpec[] }>;
  GetMetrics: Unary<object, { metricValues: MetricValue[] }>;
  StreamIsActive(req: object, options: grpc.CallOptions): grpc.ClientReadableStream<{ result: boolean }>;
}

/** The recorded values and end of one StreamIsActive call. */
export class ActivityRecorder {
  readonly values: boolean[] = [];
  /** performance.now() at each value's arrival (the benchmarks time the wake signal with it). */
  readonly times: number[] = [];
  /** Settles with the final status: OK for a clean end, the error's code otherwise. */
  readonly ended: Promise<grpc.StatusObject | grpc.ServiceError>;
  readonly #call: grpc.ClientReadableStream<{ result: boolean }>;
  readonly #waiters = new Set<() => void>();

  constructor(call: grpc.ClientReadableStream<{ result: boolean }>) {
    this.#call = call;
    call.on("data", (m: { result: boolean }) => {
      this.values.push(m.result);
      this.times.push(performance.now());
      for (const w of this.#waiters) w();
    });
    this.ended = new Promise((resolve) => {
      call.on("error", (err: grpc.ServiceError) => resolve(err));
      call.on("status", (s: grpc.StatusObject) => {
        if (s.code === grpc.status.OK) resolve(s);
      });
    });
  }

  /** Resolves with the index of the first value at or after `from` that satisfies `pred`. */
  waitFor(pred: (v: boolean) => boolean, from = 0, ms = 5000): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.values.findIndex((v, j) => j >= from && pred(v));
        if (i < 0) return false;
        done();
        resolve(i);
        return true;
      };
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`no matching StreamIsActive value within ${ms} ms; got [${this.values.join(", ")}]`),
        );
      }, ms);
      this.#waiters.add(check);
      check();
    });
  }

  cancel(): void {
    this.#call.cancel();
  }
}

export class KedaClient {
  readonly #client: RawClient;

  private constructor(client: RawClient) {
    this.#client = client;
  }

  /** Connects (lazily, as gRPC does) to `address` ("127.0.0.1:PORT"); close() it after use. */
  static async connect(address: string): Promise<KedaClient> {
    const def = await protoLoader.load(PROTO_PATH, { keepCase: true, longs: Number, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      externalscaler: { ExternalScaler: grpc.ServiceClientConstructor };
    };
    const client = new pkg.externalscaler.ExternalScaler(address, grpc.credentials.createInsecure());
    return new KedaClient(client as unknown as RawClient);
  }

  /** What KEDA sends: the ScaledObject's name and namespace, and the trigger's metadata. */
  static ref(metadata: Metadata) {
    return { name: "model", namespace: "serving", scalerMetadata: metadata };
  }

  async isActive(metadata: Metadata): Promise<boolean> {
    const res = await this.#unary(this.#client.IsActive, KedaClient.ref(metadata));
    return res.result;
  }

  async getMetricSpec(metadata: Metadata): Promise<MetricSpec[]> {
    return (await this.#unary(this.#client.GetMetricSpec, KedaClient.ref(metadata))).metricSpecs;
  }

  async getMetrics(metadata: Metadata, metricName: string): Promise<MetricValue[]> {
    const req = { scaledObjectRef: KedaClient.ref(metadata), metricName };
    return (await this.#unary(this.#client.GetMetrics, req)).metricValues;
  }

  streamIsActive(metadata: Metadata): ActivityRecorder {
    return new ActivityRecorder(this.#client.StreamIsActive(KedaClient.ref(metadata), {}));
  }

  close(): void {
    this.#client.close();
  }

  #unary<Req, Res>(method: Unary<Req, Res>, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.#client, req, { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) =>
        err || !res ? reject(err ?? new Error("empty response")) : resolve(res),
      );
    });
  }
}

/** The gRPC status code of a rejected call (grpc.status.NOT_FOUND, ...). */
export async function grpcCode(p: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error("expected the call to fail");
}

export { grpc };

// ---- The replica side these tests need: a settable SignalHub and a peer's admin route. ----

/** One target's settable counts; setting a count notifies the hub's listeners, as gates do. */
export class FakeTarget implements TargetSignals {
  readonly name: string;
  ready = false;
  #pending = 0;
  #inFlight = 0;
  readonly #notify: (t: FakeTarget) => void;

  constructor(name: string, notify: (t: FakeTarget) => void) {
    this.name = name;
    this.#notify = notify;
  }
  get pending(): number {
    return this.#pending;
  }
  set pending(n: number) {
    this.#pending = n;
    this.#notify(this);
  }
  get inFlight(): number {
    return this.#inFlight;
  }
  set inFlight(n: number) {
    this.#inFlight = n;
    this.#notify(this);
  }
}

export class FakeHub implements SignalHub {
  readonly #targets: FakeTarget[];
  readonly #listeners = new Set<(t: TargetSignals) => void>();

  constructor(...names: string[]) {
    this.#targets = names.map((n) => new FakeTarget(n, (t) => this.#emit(t)));
  }
  targets(): readonly FakeTarget[] {
    return this.#targets;
  }
  get(name: string): FakeTarget | undefined {
    return this.#targets.find((t) => t.name === name);
  }
  /** get() for a target the test knows exists. */
  t(name: string): FakeTarget {
    const t = this.get(name);
    if (!t) throw new Error(`no target ${name}`);
    return t;
  }
  onChange(listener: (t: TargetSignals) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  get listenerCount(): number {
    return this.#listeners.size;
  }
  #emit(t: TargetSignals): void {
    for (const l of this.#listeners) l(t);
  }
}

/**
 * A peer replica's admin port, reduced to the route peers poll:
 * `GET /keda/targets/:name?scope=local` -> `{"target","pending","inFlight","ready"}` from `hub`.
 * Anything else (a missing scope=local included) is a 400, so a wrong request fails the test.
 */
export class PeerAdmin {
  readonly #server: Server;
  /** Requests answered, by target. */
  readonly asked = new Map<string, number>();
  /** Base URL, http://127.0.0.1:PORT (still known after close()). */
  readonly url: string;
  readonly port: number;

  private constructor(server: Server) {
    this.#server = server;
    this.port = (server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  static async start(hub: SignalHub): Promise<PeerAdmin> {
    let self: PeerAdmin | undefined;
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const m = /^\/keda\/targets\/([^/]+)$/.exec(url.pathname);
      if (req.method !== "GET" || !m || url.searchParams.get("scope") !== "local") {
        res.writeHead(400).end();
        return;
      }
      const name = decodeURIComponent(m[1]!);
      const t = hub.get(name);
      if (!t) {
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"type":"no_route"}}');
        return;
      }
      self?.asked.set(name, (self.asked.get(name) ?? 0) + 1);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ target: t.name, pending: t.pending, inFlight: t.inFlight, ready: t.ready }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    self = new PeerAdmin(server);
    return self;
  }

  /** Stops listening and cuts open keep-alive sockets: the peer is gone. */
  async close(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }
}
