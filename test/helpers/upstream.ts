/**
 * A controllable upstream for tests: a real node:http server on 127.0.0.1 that can be "down"
 * (port closed: connection refused), "gateway-cold" (answers like a gateway with no endpoint),
 * or up; it records every request that reached it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** Echoes a JSON summary; streams SSE chunks when the body says "stream": true. */
export const echoHandler: Handler = (req, res, body) => {
  let json: { stream?: boolean; n?: number; gapMs?: number; id?: string } = {};
  try {
    json = JSON.parse(body);
  } catch {}
  if (json.stream) {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const n = json.n ?? 3;
    let i = 0;
    const tick = () => {
      if (res.destroyed) return;
      if (i < n) {
        res.write(`data: ${JSON.stringify({ i, id: json.id ?? null })}\n\n`);
        i++;
        setTimeout(tick, json.gapMs ?? 0);
      } else {
        res.end("data: [DONE]\n\n");
      }
    };
    tick();
    return;
  }
  res.writeHead(200, { "content-type": "application/json", "x-upstream": "yes" });
  res.end(JSON.stringify({ method: req.method, url: req.url, body, id: json.id ?? null }));
};

export class Upstream {
  readonly seen: Seen[] = [];
  handler: Handler;
  #server: Server | undefined;
  #sockets = new Set<Socket>();
  port = 0;

  constructor(handler: Handler = echoHandler) {
    this.handler = handler;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get up(): boolean {
    return this.#server !== undefined;
  }

  /** Listens (again) on the same port, so a target's upstream URL stays valid. */
  async start(): Promise<this> {
    if (this.#server) return this;
    const server = createServer((req, res) => {
      // Readiness probes are answered here, so handlers and `seen` only deal with real traffic.
      if (req.url === "/health") {
        req.resume();
        res.end("ok");
        return;
      }
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        this.seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        this.handler(req, res, body);
      });
    });
    server.on("connection", (s: Socket) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
    return this;
  }

  /** Port closed: every new connection is refused. Open connections are cut. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** A port that refuses connections, reserved by listening once and closing. */
  static async reservePort(): Promise<number> {
    const u = await new Upstream().start();
    const port = u.port;
    await u.stop();
    return port;
  }
}

/**
 * A minimal OpenAI chat completions answer (JSON or SSE) that echoes the last user message, for
 * tests whose client is the real openai SDK. The full vLLM look-alike is src/sim.
 */
export const openaiChatHandler: Handler = (_req, res, body) => {
  const json = JSON.parse(body || "{}") as {
    model?: string;
    stream?: boolean;
    messages?: { content?: string }[];
  };
  const text = `echo: ${json.messages?.at(-1)?.content ?? ""}`;
  const base = { id: "chatcmpl-test", created: 1, model: json.model ?? "m" };
  if (json.stream) {
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (const word of text.split(" ")) {
      const chunk = {
        ...base,
        object: "chat.completion.chunk",
        choices: [{ index: 0, delta: { content: `${word} ` }, finish_reason: null }],
      };
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    }
    res.write(
      `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`,
    );
    res.end("data: [DONE]\n\n");
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(
    JSON.stringify({
      ...base,
      object: "chat.completion",
      choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    }),
  );
};
