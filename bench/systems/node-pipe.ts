/**
 * node-pipe: the floor of any proxy written on Node.js. A layer-4 byte pipe, no HTTP at all: for
 * every accepted client connection it opens one connection to the backend and relays bytes both
 * ways with plain `'data'` listeners and `socket.write()` (no `pipe()`, no stream helpers). The
 * reader pauses when `write()` returns false and resumes on the writer's `'drain'` (fair and
 * bounded); Nagle is off on both sockets; an error or an abrupt close on one side destroys the
 * other. Since nothing is parsed, a keep-alive client connection is one keep-alive backend
 * connection, for as long as the client keeps it.
 *
 * Usage: node node-pipe.js --port N --upstream URL
 */
import { connect, createServer, type Socket } from "node:net";
import { parseArgs } from "node:util";
import { announceListening } from "./lifecycle.js";

const { values } = parseArgs({ options: { port: { type: "string" }, upstream: { type: "string" } } });
if (!values.port || !values.upstream) {
  process.stderr.write("usage: node-pipe --port N --upstream URL\n");
  process.exit(2);
}
const upstream = new URL(values.upstream);
const upstreamPort = Number(upstream.port || 80);
const upstreamHost = upstream.hostname;

const sockets = new Set<Socket>();

function track(s: Socket): void {
  sockets.add(s);
  s.once("close", () => sockets.delete(s));
}

/** Bytes from `from` to `to`, with backpressure; `from`'s end and failure are passed on. */
function relay(from: Socket, to: Socket): void {
  from.on("data", (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on("drain", () => from.resume());
  // A clean FIN: what `to` still buffers is flushed first, then its own FIN.
  from.on("end", () => to.end());
  // An error (always followed by 'close'), or a close that did not come from a clean end.
  from.on("error", () => to.destroy());
  from.on("close", () => {
    if (!to.writableEnded) to.destroy();
  });
}

const server = createServer((client) => {
  const backend = connect({ host: upstreamHost, port: upstreamPort });
  track(client);
  track(backend);
  client.setNoDelay(true);
  backend.setNoDelay(true);
  // Bytes the client sends before the backend connection is up are queued by `backend.write()`
  // (and count against its highWaterMark like any other).
  relay(client, backend);
  relay(backend, client);
});
server.on("error", (err) => {
  process.stderr.write(`node-pipe: ${err.message}\n`);
  process.exit(1);
});
server.listen(Number(values.port), "127.0.0.1", () => {
  announceListening(Number(values.port));
});

const stop = () => {
  server.close();
  for (const s of sockets) s.destroy();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
