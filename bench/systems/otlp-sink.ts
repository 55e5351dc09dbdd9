/**
 * A do-nothing OTLP/HTTP receiver for `--otel`: answers 200 to everything (an empty body is a
 * valid ExportTraceServiceResponse in protobuf, `{}` in JSON) and counts what it was sent, so
 * the results can say whether coldfront exported anything at all. `GET /__bench/stats` answers
 * `{"requests": n, "bytes": n, "paths": {path: n}}` (not counted).
 *
 * Usage: node otlp-sink.js --port N
 */
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { announceListening, exitOnSignals } from "./lifecycle.js";

const { values } = parseArgs({ options: { port: { type: "string" } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("usage: otlp-sink --port N\n");
  process.exit(2);
}

let requests = 0;
let bytes = 0;
const paths: Record<string, number> = {};

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/__bench/stats") {
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ requests, bytes, paths }));
    return;
  }
  req.on("data", (c: Buffer) => {
    bytes += c.length;
  });
  req.on("end", () => {
    requests++;
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    paths[path] = (paths[path] ?? 0) + 1;
    const json = (req.headers["content-type"] ?? "").includes("json");
    const body = json ? "{}" : "";
    res
      .writeHead(200, {
        "content-type": json ? "application/json" : "application/x-protobuf",
        "content-length": String(body.length),
      })
      .end(body);
  });
});
server.listen(port, "127.0.0.1", () => {
  announceListening(port);
});

exitOnSignals(server);
