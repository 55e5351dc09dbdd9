/**
 * http-proxy (node-http-proxy) on a plain node:http server, given a keep-alive agent: without one
 * it opens a new upstream connection per request, which no one would run in production.
 *
 * Usage: node http-proxy.js --port N --upstream URL
 */
import { Agent, createServer } from "node:http";
import { parseArgs } from "node:util";
import httpProxy from "http-proxy";

const { values } = parseArgs({ options: { port: { type: "string" }, upstream: { type: "string" } } });
if (!values.port || !values.upstream) {
  process.stderr.write("usage: http-proxy --port N --upstream URL\n");
  process.exit(2);
}

// Idle sockets close before the backend's own 5 s keep-alive timeout does. No cap on sockets
// that matters (Node's default is none): 1,000 concurrent paced streams need 1,000 upstreams.
const agent = new Agent({ keepAlive: true, maxSockets: 4096, timeout: 4000 });
const proxy = httpProxy.createProxyServer({ target: values.upstream, agent });
proxy.on("error", (_err, _req, res) => {
  if ("writeHead" in res && !res.headersSent) res.writeHead(502).end();
  else res.destroy();
});
const server = createServer((req, res) => proxy.web(req, res));
server.listen(Number(values.port), "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ event: "listening", port: Number(values.port) })}\n`);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
