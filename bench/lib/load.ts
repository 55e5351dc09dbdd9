/**
 * The warm scenarios' load generator, in its own process (so its CPU is not the harness's and
 * not the proxy's): wrk when installed (C, one thread, microsecond latencies; what the goals'
 * reference figures were measured with, bench/README.md "Goals"), else autocannon through its CLI's JSON output (1 ms latency
 * resolution). `--load-generator` picks one.
 */
import { existsSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Child } from "./procs.js";

const AUTOCANNON = join(
  dirname(createRequire(import.meta.url).resolve("autocannon/package.json")),
  "autocannon.js",
);
export const WRK = ["/usr/bin/wrk", "/usr/local/bin/wrk"].find((p) => existsSync(p));

export type Generator = "wrk" | "autocannon";

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly generator: Generator;
  /** A scratch directory for wrk's Lua script. */
  readonly dir: string;
}

export interface LoadResult {
  /** Completed requests per second over the run. */
  readonly rps: number;
  /** Latency percentiles, ms (autocannon's histogram has 1 ms resolution, wrk's 1 µs). */
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

async function autocannon(o: LoadOptions): Promise<LoadResult> {
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
  const child = Child.spawn("autocannon", process.execPath, args, { role: "load" });
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

/** Lua for wrk: the POST, and a done() that prints one JSON line (latencies in µs). */
function wrkScript(o: LoadOptions): string {
  const headers = { "content-type": "application/json", ...o.headers };
  // A long bracket whose level the body cannot close.
  let eq = "=";
  while (o.body.includes(`]${eq}]`)) eq += "=";
  return `wrk.method = "POST"
wrk.body = [${eq}[${o.body}]${eq}]
${Object.entries(headers)
  .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
  .join("\n")}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,"errors":%.0f,"p50_us":%.0f,"p99_us":%.0f}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;
}

let scripts = 0;

async function wrk(o: LoadOptions): Promise<LoadResult> {
  if (!WRK) throw new Error("wrk is not installed (Debian: apt-get install wrk)");
  const script = join(o.dir, `wrk-${++scripts}.lua`);
  writeFileSync(script, wrkScript(o));
  const args = ["-t1", `-c${o.connections}`, `-d${o.seconds}s`, "--timeout", "30s", "-s", script, o.url];
  const child = Child.spawn("wrk", WRK, args, { role: "load" });
  const code = await child.wait(o.seconds * 1000 + 60_000);
  if (code !== 0) throw new Error(`wrk failed: ${child.describe()}`);
  const line = child.stdout
    .split("\n")
    .find((l) => l.startsWith('{"duration_us"'))
    ?.trim();
  if (!line) throw new Error(`wrk printed no summary: ${child.describe()}\n${child.stdout}`);
  const r = JSON.parse(line) as {
    duration_us: number;
    requests: number;
    bytes: number;
    errors: number;
    p50_us: number;
    p99_us: number;
  };
  const seconds = r.duration_us / 1e6;
  return {
    rps: r.requests / seconds,
    p50: r.p50_us / 1000,
    p99: r.p99_us / 1000,
    bytesPerSec: r.bytes / seconds,
    requests: r.requests,
    errors: r.errors,
  };
}

export function runLoad(o: LoadOptions): Promise<LoadResult> {
  return o.generator === "wrk" ? wrk(o) : autocannon(o);
}

/** For the results header. */
export function describeGenerator(g: Generator): string {
  return g === "wrk"
    ? "wrk, one thread (its own process), for the warm scenarios; custom undici clients for bursts, paced streams and the flood"
    : "autocannon 9 (its own process), for the warm scenarios; custom undici clients for bursts, paced streams and the flood";
}
