/**
 * The OpenAI wire format as vLLM's server speaks it: request checks, JSON answers, SSE chunks
 * and vLLM's error shape. The simulator stands in for vLLM, so its errors are vLLM's
 * (`{"error": {"message", "type": "BadRequestError", "param", "code": 400}}`), not coldfront's
 * vocabulary of src/errors.ts; every simulator error is spelled here and nowhere else.
 *
 * Simplifications: one choice per request (`n` is ignored, as are `stop`, `logprobs` and
 * sampling parameters); a batched completions prompt (an array) is read as one prompt; tokens
 * are words (text.ts).
 */
import { randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { SeqSink } from "./engine.js";
import type { SimOptions } from "./options.js";
import { type FinishReason, tokenText, words } from "./text.js";

export type Route = "chat" | "completions";

const ERROR_TYPES = {
  400: "BadRequestError",
  404: "NotFoundError",
  413: "BadRequestError",
  503: "ServiceUnavailableError",
} as const;

export class VllmError extends Error {
  constructor(
    readonly status: keyof typeof ERROR_TYPES,
    message: string,
  ) {
    super(message);
    this.name = "VllmError";
  }

  send(res: ServerResponse): void {
    const body = JSON.stringify({
      error: { message: this.message, type: ERROR_TYPES[this.status], param: null, code: this.status },
    });
    sendJson(res, this.status, body);
  }
}

/**
 * Headers set but not written before end(body), so Node sends a Content-Length instead of
 * chunked encoding, as vLLM does for JSON.
 */
export function sendJson(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.end(body);
}

/** FastAPI's answers for routes the server does not have. */
export function sendNotFound(res: ServerResponse): void {
  sendJson(res, 404, '{"detail":"Not Found"}');
}

export function sendMethodNotAllowed(res: ServerResponse): void {
  sendJson(res, 405, '{"detail":"Method Not Allowed"}');
}

export const notLoaded = (): VllmError => new VllmError(503, "the model is still loading");

/** A generation request, checked. */
export interface Generation {
  readonly route: Route;
  readonly stream: boolean;
  /** `stream_options.include_usage`: a last chunk with empty choices and the usage. */
  readonly includeUsage: boolean;
  readonly promptTokens: number;
  /** The text the output is derived from: the last chat message, or the prompt. */
  readonly source: string;
  readonly maxTokens: number;
  /** The request's own `seed`, else the simulator's. */
  readonly seed: number;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** A chat message's text: a string, or the text parts of a content array. */
function messageText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((part) => (isObject(part) && typeof part.text === "string" ? part.text : ""))
    .filter((t) => t.length > 0)
    .join(" ");
}

function chatPrompt(body: Json): { promptTokens: number; source: string } {
  const messages = body.messages;
  if (messages === undefined) throw new VllmError(400, "messages: Field required");
  if (!Array.isArray(messages) || messages.length === 0 || !messages.every(isObject))
    throw new VllmError(400, "messages: Input should be a non-empty list of messages");
  const texts = messages.map((m) => messageText(m.content));
  return {
    promptTokens: texts.reduce((n, t) => n + words(t).length, 0),
    source: texts.at(-1) ?? "",
  };
}

function completionPrompt(body: Json): { promptTokens: number; source: string } {
  const prompt = body.prompt;
  if (prompt === undefined) throw new VllmError(400, "prompt: Field required");
  if (typeof prompt === "string") return { promptTokens: words(prompt).length, source: prompt };
  // Token ids (numbers), strings, or lists of either: read as one prompt.
  const flat = Array.isArray(prompt) ? prompt.flat() : [];
  if (flat.length === 0 || !flat.every((p) => typeof p === "string" || Number.isInteger(p)))
    throw new VllmError(400, "prompt: Input should be a valid string or list of strings or token ids");
  const source = flat.join(" ");
  const tokens = flat.reduce<number>((n, p) => n + (typeof p === "string" ? words(p).length : 1), 0);
  return { promptTokens: tokens, source };
}

function optionalInteger(body: Json, key: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v)) throw new VllmError(400, `${key}: Input should be a valid integer`);
  return v as number;
}

/** Parses and checks a request body as vLLM does; throws VllmError with its status. */
export function parseGeneration(route: Route, text: string, o: SimOptions): Generation {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new VllmError(400, `JSON decode error: ${(err as Error).message}`);
  }
  if (!isObject(body)) throw new VllmError(400, "Input should be a valid dictionary");
  // vLLM serves the requested model or answers 404; a request that names none gets the served one.
  if (body.model !== undefined && body.model !== null && body.model !== o.model) {
    if (typeof body.model !== "string") throw new VllmError(400, "model: Input should be a valid string");
    throw new VllmError(404, `The model \`${body.model}\` does not exist.`);
  }
  const { promptTokens, source } = route === "chat" ? chatPrompt(body) : completionPrompt(body);

  const stream = body.stream ?? false;
  if (typeof stream !== "boolean") throw new VllmError(400, "stream: Input should be a valid boolean");
  const streamOptions = body.stream_options;
  if (streamOptions !== undefined && streamOptions !== null) {
    if (!stream) throw new VllmError(400, "Stream options can only be defined when `stream=True`.");
    if (!isObject(streamOptions))
      throw new VllmError(400, "stream_options: Input should be a valid dictionary");
  }
  const includeUsage = isObject(streamOptions) && streamOptions.include_usage === true;

  const asked =
    (route === "chat" ? optionalInteger(body, "max_completion_tokens") : undefined) ??
    optionalInteger(body, "max_tokens");
  if (asked !== undefined && asked < 1)
    throw new VllmError(400, `max_tokens must be at least 1, got ${asked}.`);
  const room = o.maxModelLen - promptTokens;
  const maxTokens = asked ?? Math.min(o.maxTokens, room);
  if (maxTokens > room || maxTokens < 1) {
    const where = route === "chat" ? "messages" : "prompt";
    throw new VllmError(
      400,
      `This model's maximum context length is ${o.maxModelLen} tokens. However, you requested ` +
        `${promptTokens + Math.max(1, maxTokens)} tokens (${promptTokens} in the ${where}, ` +
        `${Math.max(1, maxTokens)} in the completion). Please reduce the length of the ${where} or completion.`,
    );
  }
  const seed = optionalInteger(body, "seed") ?? o.seed;
  return { route, stream, includeUsage, promptTokens, source, maxTokens, seed: seed >>> 0 };
}

// vLLM's ids are `chatcmpl-` / `cmpl-` and 32 hex digits: a random prefix and a counter here,
// which is cheaper per request and still unique per process.
const ID_PREFIX = randomBytes(12).toString("hex");
let idCounter = 0;
function nextId(route: Route): string {
  idCounter = (idCounter + 1) >>> 0;
  return `${route === "chat" ? "chatcmpl" : "cmpl"}-${ID_PREFIX}${idCounter.toString(16).padStart(8, "0")}`;
}

interface Answer {
  readonly route: Route;
  readonly model: string;
  readonly promptTokens: number;
  readonly tokens: readonly string[];
  readonly includeUsage: boolean;
}

function usage(a: Answer, completionTokens: number) {
  return {
    prompt_tokens: a.promptTokens,
    completion_tokens: completionTokens,
    total_tokens: a.promptTokens + completionTokens,
  };
}

/** Answers once, when the generation finishes: a `chat.completion` or `text_completion`. */
export class JsonSink implements SeqSink {
  readonly #res: ServerResponse;
  readonly #a: Answer;

  constructor(res: ServerResponse, answer: Answer) {
    this.#res = res;
    this.#a = answer;
  }

  emit(_from: number, to: number, finish: FinishReason | null): void {
    if (finish === null) return;
    const a = this.#a;
    const text = a.tokens.slice(0, to).join(" ");
    const choice =
      a.route === "chat"
        ? {
            index: 0,
            message: { role: "assistant", content: text, tool_calls: [] },
            logprobs: null,
            finish_reason: finish,
            stop_reason: null,
          }
        : { index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null };
    const body = JSON.stringify({
      id: nextId(a.route),
      object: a.route === "chat" ? "chat.completion" : "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: a.model,
      choices: [choice],
      usage: usage(a, to),
    });
    sendJson(this.#res, 200, body);
  }
}

const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" };

/**
 * Server-sent events, one chunk per token. Chat: a first chunk with `role: "assistant"`, then
 * content deltas, the last of which carries `finish_reason` (as vLLM sends it); completions:
 * `text` deltas. With include_usage, a chunk with empty `choices` and the usage; then
 * `data: [DONE]`. The constant part of each chunk is built once per request.
 */
export class StreamSink implements SeqSink {
  readonly #res: ServerResponse;
  readonly #a: Answer;
  /** `data: {"id":...,"choices":[{"index":0,` up to the delta or text. */
  readonly #head: string;
  readonly #tailOpen: string;

  constructor(res: ServerResponse, answer: Answer) {
    this.#res = res;
    this.#a = answer;
    const chat = answer.route === "chat";
    this.#head =
      `data: {"id":${JSON.stringify(nextId(answer.route))},"object":"${chat ? "chat.completion.chunk" : "text_completion"}",` +
      `"created":${Math.floor(Date.now() / 1000)},"model":${JSON.stringify(answer.model)},"choices":`;
    this.#tailOpen = chat ? `[{"index":0,"delta":` : `[{"index":0,"text":`;
    // Headers go out at once, as vLLM's StreamingResponse does; tokens follow as generated.
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
  }

  #chunk(piece: string, finish: FinishReason | null): string {
    const chat = this.#a.route === "chat";
    const value = chat
      ? piece === "" && finish !== null
        ? "{}"
        : `{"content":${JSON.stringify(piece)}}`
      : JSON.stringify(piece);
    const reason = finish === null ? "null" : `"${finish}"`;
    return `${this.#head}${this.#tailOpen}${value},"logprobs":null,"finish_reason":${reason}}]}\n\n`;
  }

  emit(from: number, to: number, finish: FinishReason | null): void {
    // The client left; the engine hears of it on the response's close event.
    if (this.#res.destroyed) return;
    const a = this.#a;
    let out = "";
    if (from === 0 && a.route === "chat")
      out += `${this.#head}[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n`;
    for (let i = from; i < to; i++) out += this.#chunk(tokenText(a.tokens, i), i === to - 1 ? finish : null);
    if (finish === null) {
      this.#res.write(out);
      return;
    }
    if (from === to) out += this.#chunk("", finish);
    if (a.includeUsage) out += `${this.#head}[],"usage":${JSON.stringify(usage(a, to))}}\n\n`;
    this.#res.end(`${out}data: [DONE]\n\n`);
  }
}

/** The `GET /v1/models` answer: an OpenAI list with the served model, as vLLM lists it. */
export function modelList(o: SimOptions, created: number): string {
  return JSON.stringify({
    object: "list",
    data: [
      {
        id: o.model,
        object: "model",
        created,
        owned_by: "vllm",
        root: o.model,
        parent: null,
        max_model_len: o.maxModelLen,
        permission: [],
      },
    ],
  });
}
