/**
 * autocannon, in its own process (so the load generator's CPU is not the harness's and not the
 * proxy's), through its CLI's JSON output.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Child } from "./procs.js";

const AUTOCANNON = join(
  dirname(createRequire(import.meta.url).resolve("autocannon/package.json")),
  "autocannon.js",
);

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface LoadResult {
  /** Completed requests per second over the run. */
  readonly rps: number;
  /** Latency percentiles, ms (autocannon's histogram has 1 ms resolution). */
  readonly p50: number;
  readonly p99: number;
  /** Response bytes (headers and body) per second. */
  readonly bytesPerSec: number;
  readonly requests: number;
  /** Connection errors, timeouts and non-2xx answers. */
  readonly errors: number;
}

interface AutocannonJson {
  duration: number;
  requests: { total: number };
  latency: { p50: number; p99: number };
  throughput: { total: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const headers = { "content-type": "application/json", ...o.headers };
  const args = [
    AUTOCANNON,
    "--json",
    "--connections",
    String(o.connections),
    "--duration",
    String(o.seconds),
    "--timeout",
    "30",
    "--method",
    "POST",
    "--body",
    o.body,
    ...Object.entries(headers).flatMap(([k, v]) => ["--headers", `${k}=${v}`]),
    o.url,
  ];
  const child = Child.spawn("autocannon", process.execPath, args);
  const code = await child.wait(o.seconds * 1000 + 60_000);
  if (code !== 0) throw new Error(`autocannon failed: ${child.describe()}`);
  const r = JSON.parse(child.stdout.trim().split("\n").pop() ?? "") as AutocannonJson;
  return {
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    bytesPerSec: r.throughput.total / r.duration,
    requests: r.requests.total,
    errors: r.errors + r.timeouts + r.non2xx,
  };
}
