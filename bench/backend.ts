/**
 * The benchmarks' upstream: a tiny, fast OpenAI-shaped backend on node:http, purpose-built so
 * that warm measurements are about the proxy in front of it, not about a simulator's own work.
 *
 * - `POST` with `"stream": true` in the body: an SSE stream of `max_tokens` chat-completion
 *   chunks (default 50) and `data: [DONE]`, back to back, or one every `x-bench-itl-ms`
 *   milliseconds when the request carries that header (every proxy passes it through).
 * - any other `POST`: a small, prebuilt chat completion JSON; after `x-bench-gen-ms`
 *   milliseconds when the request carries that header (a non-streaming generation sends its
 *   head only once it is done, as vLLM's does). Nothing bounds how many run at once.
 * - `GET /health`: 200.
 *
 * `--capacity N` makes it a backend of fixed capacity: past N POSTs in progress, a new one has its
 * connection reset before any response head, as a server whose accept queue or worker pool is
 * full does (the release scenario).
 *
 * `--ready-after MS` keeps the port closed for that long, as vLLM does while it loads a model;
 * once listening it prints `{"event":"ready","at":<epoch ms>,"port":N}`, the instant the
 * cold-burst scenarios measure coldfront's added delay from.
 *
 * Usage: node backend.js --port N [--ready-after MS] [--capacity N]
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    "ready-after": { type: "string", default: "0" },
    capacity: { type: "string", default: "0" },
  },
});
const capacity = Number(values.capacity);
const port = Number(values.port);
const readyAfter = Number(values["ready-after"]);
if (
  !Number.isInteger(port) ||
  port <= 0 ||
  !(readyAfter >= 0) ||
  !(Number.isInteger(capacity) && capacity >= 0)
) {
  process.stderr.write("usage: backend --port N [--ready-after MS] [--capacity N]\n");
  process.exit(2);
}

const CREATED = 1_700_000_000;
const MODEL = "bench-model";

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion",
    created: CREATED,
    model: MODEL,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: "Hello! How can I help you today?" },
        logprobs: null,
        finish_reason: "stop",
      },
    ],
    usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 },
  }),
);
const COMPLETION_HEADERS = {
  "content-type": "application/json",
  "content-length": String(COMPLETION.length),
};
const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" };

/**
 * One SSE event per token, the size of a real chat-completion chunk (about 200 bytes), encoded
 * once: 1,000 paced streams are 50,000 writes a second, and the backend shares a core with the
 * client.
 */
const CHUNKS = Array.from({ length: 64 }, (_, i) =>
  Buffer.from(
    `data: ${JSON.stringify({
      id: "chatcmpl-bench",
      object: "chat.completion.chunk",
      created: CREATED,
      model: MODEL,
      choices: [{ index: 0, delta: { content: ` token${i}` }, logprobs: null, finish_reason: null }],
    })}\n\n`,
  ),
);
const DONE = Buffer.from("data: [DONE]\n\n");
const STREAM_MARK = Buffer.from('"stream":true');

function maxTokens(body: Buffer): number {
  try {
    const n = (JSON.parse(body.toString("utf8")) as { max_tokens?: unknown }).max_tokens;
    return typeof n === "number" && n > 0 ? Math.min(n, 100_000) : 50;
  } catch {
    return 50;
  }
}

function stream(res: ServerResponse, n: number, itl: number): void {
  res.writeHead(200, SSE_HEADERS);
  let i = 0;
  let timer: NodeJS.Timeout | undefined;
  res.once("close", () => clearTimeout(timer));
  const next = (): void => {
    timer = undefined;
    if (res.destroyed) return;
    if (itl > 0) {
      res.write(CHUNKS[i % CHUNKS.length]);
      i++;
      if (i < n) timer = setTimeout(next, itl);
      else res.end(DONE);
      return;
    }
    // Back to back, as fast as the socket takes them.
    while (i < n) {
      const ok = res.write(CHUNKS[i % CHUNKS.length]);
      i++;
      if (!ok && i < n) {
        res.once("drain", next);
        return;
      }
    }
    res.end(DONE);
  };
  next();
}

/** POSTs in progress, and those reset past --capacity (printed at exit). */
let inProgress = 0;
let resets = 0;

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (req.method === "GET") {
    if (req.url === "/health") res.writeHead(200, { "content-length": "0" }).end();
    else res.writeHead(404, { "content-length": "0" }).end();
    req.resume();
    return;
  }
  if (capacity > 0) {
    if (inProgress >= capacity) {
      resets++;
      req.socket.destroy();
      return;
    }
    inProgress++;
    res.once("close", () => inProgress--);
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    if (body.includes(STREAM_MARK)) {
      const itl = Number(req.headers["x-bench-itl-ms"] ?? 0);
      stream(res, maxTokens(body), Number.isFinite(itl) && itl > 0 ? itl : 0);
      return;
    }
    const gen = Number(req.headers["x-bench-gen-ms"] ?? 0);
    if (Number.isFinite(gen) && gen > 0) {
      const timer = setTimeout(() => {
        if (!res.destroyed) res.writeHead(200, COMPLETION_HEADERS).end(COMPLETION);
      }, gen);
      res.once("close", () => clearTimeout(timer));
      return;
    }
    res.writeHead(200, COMPLETION_HEADERS);
    res.end(COMPLETION);
  });
}

const server = createServer(handle);
// The same idle close as vLLM's uvicorn (5 s); proxies must keep their pools below it.
server.keepAliveTimeout = 5000;

function listen(): void {
  server.listen({ port, host: values.host, backlog: 4096 }, () => {
    process.stdout.write(
      `${JSON.stringify({ event: "ready", at: performance.timeOrigin + performance.now(), port })}\n`,
    );
  });
}

const startTimer = setTimeout(listen, readyAfter);
const stop = () => {
  clearTimeout(startTimer);
  if (capacity > 0) process.stdout.write(`${JSON.stringify({ event: "stopped", resets })}\n`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
