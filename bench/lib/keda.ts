/**
 * KEDA's side of the external-push trigger, reduced to what the wake scenario needs: one
 * StreamIsActive call with the target in the trigger metadata, values timestamped on arrival.
 */
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ROOT } from "./paths.js";

interface ScalerClient extends grpc.Client {
  StreamIsActive(req: object, options: grpc.CallOptions): grpc.ClientReadableStream<{ result: boolean }>;
}

export class ActiveStream {
  /** [performance.now(), result] per message. */
  readonly values: [number, boolean][] = [];
  readonly #call: grpc.ClientReadableStream<{ result: boolean }>;
  readonly #waiters = new Set<() => void>();

  constructor(call: grpc.ClientReadableStream<{ result: boolean }>) {
    this.#call = call;
    call.on("data", (m: { result: boolean }) => {
      this.values.push([performance.now(), m.result]);
      for (const w of this.#waiters) w();
    });
    // A cancelled call ends with an error event; nothing to report.
    call.on("error", () => {});
  }

  /** performance.now() of the first value `result` at or after index `from`. */
  waitFor(result: boolean, from: number, ms: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.values.slice(from).find(([, v]) => v === result);
        if (!hit) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(hit[0]);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`StreamIsActive sent no ${result} within ${ms} ms`));
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
  readonly #client: ScalerClient;

  private constructor(client: ScalerClient) {
    this.#client = client;
  }

  static async connect(address: string): Promise<KedaClient> {
    const def = await protoLoader.load(join(ROOT, "proto", "externalscaler.proto"), {
      keepCase: true,
      longs: Number,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      externalscaler: { ExternalScaler: grpc.ServiceClientConstructor };
    };
    const client = new pkg.externalscaler.ExternalScaler(address, grpc.credentials.createInsecure());
    return new KedaClient(client as unknown as ScalerClient);
  }

  /** What KEDA sends: the ScaledObject, and the trigger metadata naming coldfront's target. */
  streamIsActive(target: string): ActiveStream {
    const ref = { name: "model", namespace: "bench", scalerMetadata: { target } };
    return new ActiveStream(this.#client.StreamIsActive(ref, {}));
  }

  close(): void {
    this.#client.close();
  }
}
