/**
 * node:http hold: the least any Node.js HTTP server can spend to hold a request. A plain
 * node:http server that, for every request, reads the body into one Buffer (Buffer.concat of its
 * 'data' chunks) and keeps `{res, body}` in an array, answering nothing, until it is told to
 * release: then it answers every held request 200 with a small JSON body, in arrival order. No
 * proxying, no parsing of the body, no per-request timer; `requestTimeout` off (a held request
 * waits as long as the hold lasts), `headersTimeout` at Node's default, keep-alive 65 s like
 * coldfront's. Run with coldfront's heap flags (the first line of its CLI), like for like.
 *
 * Control paths on the same server, never held themselves:
 * - `GET /__held`: `{"held": N, "memory": process.memoryUsage(), "lag": {"p99Ms", "maxMs"}}`;
 *   the event-loop delay (monitorEventLoopDelay at 10 ms resolution, as prom-client's default
 *   metrics sample it for coldfront) covers the time since the last `GET /__held?reset`, which
 *   then starts a new period.
 * - `POST /__release`: answers every held request, then itself 200 `{"released": N}`.
 *
 * Usage: node node-hold.js --port N
 */
import { createServer, type ServerResponse } from "node:http";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { announceListening, exitOnSignals } from "./lifecycle.js";

const { values } = parseArgs({ options: { port: { type: "string" } } });
if (!values.port) {
  process.stderr.write("usage: node-hold --port N\n");
  process.exit(2);
}

interface Held {
  readonly res: ServerResponse;
  readonly body: Buffer;
}

let held: Held[] = [];
const OK = Buffer.from('{"ok":true}');
const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();

function json(res: ServerResponse, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

const server = createServer((req, res) => {
  const url = req.url ?? "/";
  if (url === "/__held" || url === "/__held?reset") {
    req.resume();
    const ns = (x: number) => x / 1e6;
    json(res, {
      held: held.length,
      memory: process.memoryUsage(),
      lag: { p99Ms: ns(lag.percentile(99)), maxMs: ns(lag.max) },
    });
    if (url.endsWith("?reset")) lag.reset();
    return;
  }
  if (url === "/__release") {
    req.resume();
    const all = held;
    held = [];
    for (const h of all) {
      h.res.writeHead(200, { "content-type": "application/json", "content-length": OK.length });
      h.res.end(OK);
    }
    json(res, { released: all.length });
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => held.push({ res, body: Buffer.concat(chunks) }));
});
server.requestTimeout = 0;
server.keepAliveTimeout = 65_000;
server.on("error", (err) => {
  process.stderr.write(`node-hold: ${err.message}\n`);
  process.exit(1);
});
server.listen(Number(values.port), "127.0.0.1", () => {
  announceListening(Number(values.port));
});

exitOnSignals(server);
