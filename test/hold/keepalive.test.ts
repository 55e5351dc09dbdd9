/** Streaming requests held through a long cold start (DESIGN.md step 7, issue 4). */
import OpenAI from "openai";
import { Agent, fetch as undiciFetch } from "undici";
import { describe, expect, test } from "vitest";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";
import { openaiChatHandler } from "../helpers/upstream.js";

const defer = useCleanups();

const cold = (limits: Record<string, unknown> = {}) =>
  startColdTarget(defer, {
    handler: openaiChatHandler,
    extra: { limits, hold: { keepaliveAfter: "100ms", keepaliveInterval: "100ms" } },
  });

function streamRequest(url: string, init: RequestInit = {}) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "llama", stream: true, messages: [{ role: "user", content: "keep me" }] }),
    ...init,
  });
}

describe("stream keepalive", () => {
  test("a streaming SDK call held longer than its HTTP client's header timeout succeeds", async () => {
    const { up, app } = await cold();
    // undici's headersTimeout is 300 s by default; 500 ms here stands for it.
    const dispatcher = new Agent({ headersTimeout: 500 });
    defer(() => dispatcher.close());
    const client = new OpenAI({
      baseURL: `${app.clientUrl}/v1`,
      apiKey: "x",
      maxRetries: 0,
      fetch: ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher })) as never,
    });
    const call = (async () => {
      const stream = await client.chat.completions.create({
        model: "llama",
        stream: true,
        messages: [{ role: "user", content: "keep me" }],
      });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      return text;
    })();
    await waitFor(() => app.hub.get("llama")?.pending === 1, "held");
    await new Promise((r) => setTimeout(r, 1500));
    await up.start();
    expect((await call).trim()).toBe("echo: keep me");
  });

  test("the raw stream: early 200, comment lines while waiting, then the upstream's events", async () => {
    const { up, app } = await cold();
    const res = await streamRequest(app.clientUrl);
    // Headers arrived while the target was still cold.
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    expect(up.up).toBe(false);
    setTimeout(() => void up.start(), 400);
    const text = await res.text();
    expect(text).toMatch(/^: waiting for llama\n\n/);
    expect(text.match(/: waiting for llama/g)?.length).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/: held \d+ms/);
    expect(text).toContain('"content":"echo: "');
    expect(text.trim().endsWith("data: [DONE]")).toBe(true);
  });

  test("a timeout after early headers is one final error event and no [DONE]", async () => {
    const { app } = await cold({ holdTimeout: "400ms" });
    const res = await streamRequest(app.clientUrl);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain(": waiting for llama");
    const last = text.trim().split("\n\n").at(-1) as string;
    expect(last.startsWith("data: ")).toBe(true);
    expect(JSON.parse(last.slice(6)).error.type).toBe("cold_start_timeout");
    expect(text).not.toContain("[DONE]");
  });

  test("an upstream answering non-200 after early headers becomes an error event the SDK raises", async () => {
    const { up, app } = await cold();
    up.handler = (_req, res) => {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "max_tokens is too large", type: "BadRequestError" } }));
    };
    const client = new OpenAI({ baseURL: `${app.clientUrl}/v1`, apiKey: "x", maxRetries: 0 });
    const call = (async () => {
      const stream = await client.chat.completions.create({
        model: "llama",
        stream: true,
        messages: [{ role: "user", content: "x" }],
      });
      for await (const _ of stream) {
        // drain
      }
    })();
    await waitFor(() => app.hub.get("llama")?.pending === 1, "held");
    await new Promise((r) => setTimeout(r, 300));
    await up.start();
    const err = await call.then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(String((err as Error).message)).toContain("max_tokens is too large");
    expect((err as InstanceType<typeof OpenAI.APIError>).type).toBe("upstream_error");
  });

  test("a stream that got early headers asks the upstream for identity; an encoded answer becomes an error event", async () => {
    const { up, app } = await cold();
    let encode = false;
    up.handler = (req, res) => {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        ...(encode ? { "content-encoding": "gzip" } : {}),
      });
      res.end(`data: {"ae":${JSON.stringify(req.headers["accept-encoding"] ?? null)}}\n\ndata: [DONE]\n\n`);
    };
    const first = await streamRequest(app.clientUrl, {
      headers: { "content-type": "application/json", "accept-encoding": "gzip, br" },
    });
    expect(first.status).toBe(200);
    setTimeout(() => void up.start(), 300);
    const text = await first.text();
    expect(text).toContain('"ae":"identity"');

    // An upstream that compresses anyway would corrupt a stream declared uncompressed.
    await up.stop();
    await waitFor(() => app.hub.get("llama")?.ready === false, "cold again", 10_000);
    encode = true;
    const second = await streamRequest(app.clientUrl);
    setTimeout(() => void up.start(), 300);
    const text2 = await second.text();
    expect(text2).toMatch(/data: \{"error":\{"message":"upstream answered content-encoding gzip/);
    expect(text2).not.toContain("[DONE]");
  });

  test("a plain (non-streaming) request gets no early headers", async () => {
    const { up, app } = await cold();
    const call = fetch(`${app.clientUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "llama", messages: [{ role: "user", content: "plain" }] }),
    });
    await new Promise((r) => setTimeout(r, 400));
    await up.start();
    const res = await call;
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(Number(res.headers.get("x-coldfront-held-ms"))).toBeGreaterThanOrEqual(300);
  });
});
