/** The simulator's wire format against the real openai SDK (issue 3 "Show"), and its startup modes. */
import OpenAI from "openai";
import { describe, expect, test } from "vitest";
import type { SimOptions } from "../../src/sim/options.js";
import { type Sim, startSim } from "../../src/sim/server.js";
import { testLogger, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

async function start(options: Partial<SimOptions> = {}): Promise<{ sim: Sim; client: OpenAI }> {
  const sim = await startSim({ port: 0, output: "echo", logger: testLogger(), ...options });
  defer(() => sim.close());
  const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "x", maxRetries: 0 });
  return { sim, client };
}

async function started(options: Partial<SimOptions> = {}) {
  const s = await start(options);
  await s.sim.ready;
  return s;
}

/** The error an SDK call rejects with. */
async function rejection(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as InstanceType<typeof OpenAI.APIError>;
}

/** What a connection attempt to `url` ends with: an HTTP status, or the socket error code. */
async function reach(url: string): Promise<number | string> {
  return fetch(url).then(
    async (res) => {
      await res.arrayBuffer();
      return res.status;
    },
    (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
  );
}

const MODEL = "coldfront-sim";
const messages = [
  { role: "system" as const, content: "be brief" },
  { role: "user" as const, content: "the cold start is over" },
];

describe("sim: OpenAI wire format", () => {
  test("non-streaming chat: the last message echoed, usage counted in words, stop or length", async () => {
    const { client } = await started();
    const r = await client.chat.completions.create({ model: MODEL, messages });
    expect(r.object).toBe("chat.completion");
    expect(r.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(r.model).toBe(MODEL);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]?.message).toMatchObject({ role: "assistant", content: "the cold start is over" });
    expect(r.choices[0]?.finish_reason).toBe("stop");
    expect(r.usage).toEqual({ prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 });

    const cut = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 2 });
    expect(cut.choices[0]?.message.content).toBe("the cold");
    expect(cut.choices[0]?.finish_reason).toBe("length");
    expect(cut.usage?.completion_tokens).toBe(2);

    const cut3 = await client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: 3 });
    expect(cut3.choices[0]?.message.content).toBe("the cold start");
  });

  test("non-streaming completions: text_completion with the prompt's words", async () => {
    const { client } = await started();
    const r = await client.completions.create({ model: MODEL, prompt: "a b c d", max_tokens: 3 });
    expect(r.object).toBe("text_completion");
    expect(r.id).toMatch(/^cmpl-/);
    expect(r.choices[0]).toMatchObject({ index: 0, text: "a b c", finish_reason: "length", logprobs: null });
    expect(r.usage).toEqual({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
  });

  test("streaming chat with include_usage: role first, one chunk per token, finish_reason, usage last", async () => {
    const { client } = await started({ ttft: 5, itl: 2 });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === MODEL)).toBe(true);
    expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant");
    const withChoice = chunks.filter((c) => c.choices.length > 0);
    const content = withChoice.map((c) => c.choices[0]?.delta.content ?? "");
    expect(content.join("")).toBe("the cold start is over");
    expect(content.filter((c) => c !== "")).toHaveLength(5);
    expect(withChoice.map((c) => c.choices[0]?.finish_reason)).toEqual([
      null,
      null,
      null,
      null,
      null,
      "stop",
    ]);
    const last = chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage).toEqual({ prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 });
    expect(chunks.filter((c) => c.usage)).toHaveLength(1);
  });

  test("streaming completions (seeded) reassemble to the non-streaming text; the seed decides it", async () => {
    const { client } = await started({ output: "seeded", seed: 3, itl: 1 });
    const plain = await client.completions.create({ model: MODEL, prompt: "tell me", max_tokens: 8 });
    const text = plain.choices[0]?.text ?? "";
    expect(text.split(" ")).toHaveLength(8);

    const stream = await client.completions.create({
      model: MODEL,
      prompt: "tell me",
      max_tokens: 8,
      stream: true,
    });
    let streamed = "";
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe("text_completion");
      streamed += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(streamed).toBe(text);
    expect(finish).toBe("length");

    const again = await client.completions.create({ model: MODEL, prompt: "tell me", max_tokens: 8 });
    expect(again.choices[0]?.text).toBe(text);
    const reseeded = await client.completions.create({
      model: MODEL,
      prompt: "tell me",
      max_tokens: 8,
      seed: 4,
    });
    expect(reseeded.choices[0]?.text).not.toBe(text);
  });

  test("SSE on the wire: event-stream, only data lines, ending with data: [DONE]", async () => {
    const { sim } = await started();
    const res = await fetch(`${sim.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "hi there" }], stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect(text.endsWith("\n\ndata: [DONE]\n\n")).toBe(true);
    const events = text.split("\n\n").filter((e) => e !== "");
    expect(events.every((e) => e.startsWith("data: "))).toBe(true);
    // role, "hi", " there" (with finish_reason), [DONE]
    expect(events).toHaveLength(4);
  });

  test("errors in vLLM's shape: 400 for bad JSON and missing fields, 404 for another model", async () => {
    const { sim, client } = await started();
    const bad = await fetch(`${sim.url}/v1/chat/completions`, { method: "POST", body: "{not json" });
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error).toMatchObject({ type: "BadRequestError", param: null, code: 400 });
    expect(body.error.message).toMatch(/JSON/);

    const noMessages = await rejection(client.chat.completions.create({ model: MODEL } as never));
    expect(noMessages.status).toBe(400);
    expect(noMessages.type).toBe("BadRequestError");
    expect(noMessages.message).toMatch(/messages/);

    const noPrompt = await rejection(client.completions.create({ model: MODEL } as never));
    expect(noPrompt.status).toBe(400);
    expect(noPrompt.message).toMatch(/prompt/);

    const zero = await rejection(client.chat.completions.create({ model: MODEL, messages, max_tokens: 0 }));
    expect(zero.status).toBe(400);
    expect(zero.message).toMatch(/max_tokens/);

    const options = await rejection(
      client.chat.completions.create({ model: MODEL, messages, stream_options: { include_usage: true } }),
    );
    expect(options.status).toBe(400);

    const other = await rejection(client.chat.completions.create({ model: "gpt-4o", messages }));
    expect(other).toBeInstanceOf(OpenAI.NotFoundError);
    expect(other.type).toBe("NotFoundError");
    expect(other.message).toContain("The model `gpt-4o` does not exist.");
  });

  test("a request over --max-model-len is refused with vLLM's context-length message", async () => {
    const { client } = await started({ maxModelLen: 8, maxTokens: 4 });
    // 7 prompt words: the default 4 tokens are cut to the 1 that fits.
    const fits = await client.chat.completions.create({ model: MODEL, messages });
    expect(fits.choices[0]?.message.content).toBe("the");
    const err = await rejection(client.chat.completions.create({ model: MODEL, messages, max_tokens: 4 }));
    expect(err.status).toBe(400);
    expect(err.message).toContain("maximum context length is 8 tokens");
  });

  test("GET /v1/models lists the served model; unknown routes 404, wrong methods 405", async () => {
    const { sim, client } = await started({ model: "llama-sim" });
    const models = await client.models.list();
    expect(models.data.map((m) => [m.id, m.object, m.owned_by])).toEqual([["llama-sim", "model", "vllm"]]);
    expect(await reach(`${sim.url}/v2/nothing`)).toBe(404);
    expect(await reach(`${sim.url}/v1/chat/completions`)).toBe(405);
    const health = await fetch(`${sim.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("");
  });
});

describe("sim: startup", () => {
  test("closed (the default): the port refuses connections until loaded, then answers", async () => {
    const { sim, client } = await start({ startupDelay: 500 });
    expect(sim.port).toBeGreaterThan(0);
    expect(sim.loaded).toBe(false);
    expect(await reach(`${sim.url}/health`)).toBe("ECONNREFUSED");
    await sim.ready;
    expect(sim.loaded).toBe(true);
    expect(await reach(`${sim.url}/health`)).toBe(200);
    const r = await client.chat.completions.create({ model: MODEL, messages });
    expect(r.choices[0]?.message.content).toBe("the cold start is over");
  });

  test("unready: the port is open, /health and inference answer 503 until loaded", async () => {
    const { sim, client } = await start({ startupDelay: 500, startupMode: "unready" });
    expect(await reach(`${sim.url}/health`)).toBe(503);
    expect(await reach(`${sim.url}/metrics`)).toBe(200);
    const err = await rejection(client.chat.completions.create({ model: MODEL, messages }));
    expect(err.status).toBe(503);
    expect(await reach(`${sim.url}/v1/models`)).toBe(503);
    await sim.ready;
    expect(await reach(`${sim.url}/health`)).toBe(200);
    const r = await client.completions.create({ model: MODEL, prompt: "now warm" });
    expect(r.choices[0]?.text).toBe("now warm");
  });

  test("close before loaded rejects ready and never opens the port", async () => {
    const { sim } = await start({ startupDelay: 200 });
    await sim.close();
    await expect(sim.ready).rejects.toThrow(/closed before it was ready/);
    await new Promise((r) => setTimeout(r, 300));
    expect(await reach(`${sim.url}/health`)).toBe("ECONNREFUSED");
  });

  test("close cuts a running stream and closes the port", async () => {
    const { sim, client } = await started({ ttft: 1, itl: 50, output: "seeded" });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      stream: true,
      max_tokens: 1000,
    });
    const seen: string[] = [];
    const read = (async () => {
      for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? "");
    })().then(
      () => "ended",
      () => "failed",
    );
    await waitFor(() => seen.length >= 2, "the stream under way");
    await sim.close();
    // Cut without [DONE]: the SDK raises, as it would for a vLLM pod that died mid-stream.
    expect(await read).toBe("failed");
    expect(seen.length).toBeLessThan(1000);
    expect(await reach(`${sim.url}/health`)).toBe("ECONNREFUSED");
  });
});
