/**
 * `coldfront sim`'s HTTP server: vLLM's OpenAI-compatible routes on plain node:http (this is
 * also the benchmarks' backend, so the hot path stays a routing switch, one JSON parse and
 * prebuilt strings), over the scheduler of engine.ts.
 *
 * | route | answer |
 * | --- | --- |
 * | `POST /v1/chat/completions`, `POST /v1/completions` | JSON or SSE (openai.ts) |
 * | `GET /v1/models` | the served model |
 * | `GET /health` | 200, empty, once loaded |
 * | `GET /metrics` | vLLM's metrics (metrics.ts) |
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Fastify, { type FastifyBaseLogger } from "fastify";
import { Engine } from "./engine.js";
import { SimMetrics } from "./metrics.js";
import {
  JsonSink,
  modelList,
  notLoaded,
  parseGeneration,
  type Route,
  StreamSink,
  sendJson,
  sendMethodNotAllowed,
  sendNotFound,
  VllmError,
} from "./openai.js";
import { resolveSimOptions, type SimOptions } from "./options.js";
import { complete } from "./text.js";

/** Bodies are held in memory to parse; past this, 413 (vLLM itself has no such bound). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;
/** vLLM's uvicorn closes idle keep-alive connections after 5 s (TIMEOUT_KEEP_ALIVE). */
const KEEP_ALIVE_MS = 5000;

export interface Sim {
  /** Known at once, even while a closed-mode port is still shut. */
  readonly url: string;
  readonly port: number;
  /**
   * Resolves once the model is "loaded": /health answers 200 and, in closed mode, the port is
   * open. Rejects if the port cannot be opened, or if close() comes first.
   */
  readonly ready: Promise<void>;
  readonly loaded: boolean;
  /** Cuts every connection (streams end unfinished), clears every timer, closes the port. */
  close(): Promise<void>;
}

/**
 * Starts the simulator. `options` are the CLI flags' (options.ts), checked the same way.
 *
 * In `closed` startup mode with a delay, this resolves at once and the port opens only after the
 * delay (await `ready`); with port 0 a free port is picked beforehand (listen, read, close), so
 * that `url` is known in advance. Anything else listens before resolving (a busy port rejects
 * here) and `ready` follows the delay.
 *
 * @example
 * const sim = await startSim({ port: 0, startupDelay: 2000, ttft: 50, itl: 10 });
 * await sim.ready;
 * await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: ... });
 * await sim.close();
 */
export async function startSim(options: Partial<SimOptions> = {}): Promise<Sim> {
  const o = resolveSimOptions(options);
  const sim = new SimServer(o, o.logger ?? Fastify({ logger: { level: o.logLevel } }).log);
  await sim.start();
  return sim;
}

function urlOf(host: string, port: number): string {
  // A wildcard address is reached on loopback; an IPv6 literal needs brackets.
  const reach = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return `http://${reach.includes(":") ? `[${reach}]` : reach}:${port}`;
}

/** A port free now on `host`; closed mode opens it later (someone may take it meanwhile). */
async function freePort(host: string): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", reject);
    probe.listen(0, host, resolve);
  });
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

class SimServer implements Sim {
  readonly #o: SimOptions;
  readonly #log: FastifyBaseLogger;
  readonly #server: Server;
  readonly #engine: Engine;
  readonly #metrics: SimMetrics;
  readonly #created = Math.floor(Date.now() / 1000);
  #loaded = false;
  #closed: Promise<void> | undefined;
  #loadTimer: NodeJS.Timeout | undefined;
  /** The pending listen() of a closed-mode start, so close() never races it. */
  #opening: Promise<void> | undefined;
  #settleReady!: (err?: Error) => void;
  readonly ready: Promise<void>;
  port = 0;
  url = "";

  constructor(o: SimOptions, log: FastifyBaseLogger) {
    this.#o = o;
    this.#log = log;
    this.#metrics = new SimMetrics(o.model, () => this.#engine);
    this.#engine = new Engine({
      maxNumSeqs: o.maxNumSeqs,
      ttft: o.ttft,
      itl: o.itl,
      observer: this.#metrics,
    });
    this.#server = createServer({ keepAliveTimeout: KEEP_ALIVE_MS }, this.#handle);
    this.ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = (err) => (err ? reject(err) : resolve());
    });
    // A caller that never awaits `ready` must not see an unhandled rejection.
    this.ready.catch(() => {});
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  async start(): Promise<void> {
    const o = this.#o;
    const closedPort = o.startupMode === "closed" && o.startupDelay > 0;
    if (closedPort) {
      this.port = o.port === 0 ? await freePort(o.host) : o.port;
    } else {
      await this.#listen(o.port);
    }
    this.url = urlOf(o.host, this.port);
    this.#log.info(
      {
        url: this.url,
        port: this.port,
        model: o.model,
        startupDelayMs: o.startupDelay,
        startupMode: o.startupMode,
      },
      "sim loading",
    );
    if (o.startupDelay === 0) {
      this.#markLoaded();
      return;
    }
    this.#loadTimer = setTimeout(() => {
      this.#loadTimer = undefined;
      if (!closedPort) {
        this.#markLoaded();
        return;
      }
      this.#opening = this.#listen(this.port).then(
        () => this.#markLoaded(),
        (err: Error) => {
          this.#log.error({ err: err.message, port: this.port }, "sim could not open its port");
          this.#settleReady(err);
        },
      );
    }, o.startupDelay);
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once("error", onError);
      this.#server.listen(port, this.#o.host, () => {
        this.#server.off("error", onError);
        resolve();
      });
    });
    this.port = (this.#server.address() as AddressInfo).port;
  }

  #markLoaded(): void {
    if (this.#closed) return;
    this.#loaded = true;
    this.#log.info({ url: this.url, port: this.port, model: this.#o.model }, "sim ready");
    this.#settleReady();
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    clearTimeout(this.#loadTimer);
    this.#settleReady(new Error("the simulator was closed before it was ready"));
    await this.#opening;
    this.#engine.close();
    if (this.#server.listening) {
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      this.#server.closeAllConnections();
      await closed;
    }
    this.#log.info({ port: this.port }, "sim stopped");
  }

  readonly #handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    switch (path) {
      case "/v1/chat/completions":
        this.#post(req, res, "chat");
        return;
      case "/v1/completions":
        this.#post(req, res, "completions");
        return;
      case "/health":
        if (!this.#get(req, res)) return;
        if (this.#loaded) res.end();
        else notLoaded().send(res);
        return;
      case "/v1/models":
        if (!this.#get(req, res)) return;
        if (this.#loaded) sendJson(res, 200, modelList(this.#o, this.#created));
        else notLoaded().send(res);
        return;
      case "/metrics":
        if (!this.#get(req, res)) return;
        this.#metrics.registry.metrics().then(
          (text) => {
            res.setHeader("content-type", this.#metrics.registry.contentType);
            res.end(text);
          },
          (err: Error) => {
            this.#log.error({ err: err.message }, "metrics failed");
            res.statusCode = 500;
            res.end();
          },
        );
        return;
      default:
        req.resume();
        sendNotFound(res);
    }
  };

  /** True for GET (and HEAD); otherwise answers 405. */
  #get(req: IncomingMessage, res: ServerResponse): boolean {
    req.resume();
    if (req.method === "GET" || req.method === "HEAD") return true;
    sendMethodNotAllowed(res);
    return false;
  }

  #post(req: IncomingMessage, res: ServerResponse, route: Route): void {
    if (req.method !== "POST") {
      req.resume();
      sendMethodNotAllowed(res);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("end", () => {
      if (size > MAX_BODY_BYTES) {
        new VllmError(413, `request body over ${MAX_BODY_BYTES} bytes`).send(res);
        return;
      }
      this.#generate(res, route, Buffer.concat(chunks, size).toString("utf8"));
    });
  }

  #generate(res: ServerResponse, route: Route, body: string): void {
    if (res.destroyed) return;
    if (!this.#loaded) {
      notLoaded().send(res);
      return;
    }
    let g: ReturnType<typeof parseGeneration>;
    try {
      g = parseGeneration(route, body, this.#o);
    } catch (err) {
      if (!(err instanceof VllmError)) throw err;
      err.send(res);
      return;
    }
    const { tokens, finishReason } = complete(g.source, g.maxTokens, this.#o.output, g.seed);
    const answer = {
      route,
      model: this.#o.model,
      promptTokens: g.promptTokens,
      tokens,
      includeUsage: g.includeUsage,
    };
    const sink = g.stream ? new StreamSink(res, answer) : new JsonSink(res, answer);
    const seq = this.#engine.submit({
      promptTokens: g.promptTokens,
      tokens,
      finishReason,
      stream: g.stream,
      sink,
    });
    // A client that leaves frees its slot at once: the GPU stops generating for nobody. After
    // the answer went out this is a no-op.
    res.once("close", () => seq.abort());
  }
}
