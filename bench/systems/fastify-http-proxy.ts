/**
 * @fastify/http-proxy as its README shows it: fastify with the plugin registered at `/`, defaults
 * everywhere (undici underneath, via @fastify/reply-from). Logging off, as in coldfront's warm path.
 *
 * `--body-limit` sets fastify's bodyLimit (the flood scenario gives it coldfront's maxBodyBytes).
 *
 * Usage: node fastify-http-proxy.js --port N --upstream URL [--body-limit BYTES]
 */
import { parseArgs } from "node:util";
import proxy from "@fastify/http-proxy";
import Fastify from "fastify";

const { values } = parseArgs({
  options: { port: { type: "string" }, upstream: { type: "string" }, "body-limit": { type: "string" } },
});
if (!values.port || !values.upstream) {
  process.stderr.write("usage: fastify-http-proxy --port N --upstream URL\n");
  process.exit(2);
}

const bodyLimit = values["body-limit"] ? Number(values["body-limit"]) : undefined;
const app = Fastify({ logger: false, ...(bodyLimit ? { bodyLimit } : {}) });
await app.register(proxy, { upstream: values.upstream });
await app.listen({ host: "127.0.0.1", port: Number(values.port) });
process.stdout.write(`${JSON.stringify({ event: "listening", port: Number(values.port) })}\n`);

const stop = () => {
  void app.close().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
