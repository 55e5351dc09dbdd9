/**
 * README "Long cold starts": a non-streaming client behind an edge proxy that cuts silent
 * requests (an ALB's 60 s idle timeout, here scaled down to 1.5 s), with the real openai SDK at
 * its default settings (maxRetries 2). Without limits.edgeTimeout the edge's 504s spend the SDK's
 * retries on its own short backoff; with it, coldfront answers a retryable 503 just before the
 * edge would cut, with the cold-start ETA as Retry-After, so the last retry lands when the model
 * is up.
 */
import OpenAI from "openai";
import { describe, expect, test } from "vitest";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";
import { EdgeProxy } from "../helpers/edge.js";
import { openaiChatHandler } from "../helpers/upstream.js";

const defer = useCleanups();

const EDGE_MS = 1500;
/** Longer than the SDK's 3 attempts of one edge timeout each plus its own backoff (~0.5 + 1 s). */
const COLD_START_MS = 8000;

async function setup(extra: Record<string, unknown>, target: Record<string, unknown> = {}) {
  const t = await startColdTarget(defer, { handler: openaiChatHandler, extra, target });
  const edge = await EdgeProxy.start(t.app.clientUrl, EDGE_MS);
  defer(() => edge.close());
  return { ...t, edge };
}

function sdk(baseURL: string, options: { maxRetries?: number } = {}) {
  // Default settings: timeout 10 min, maxRetries 2, unless the test says otherwise.
  return new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: "sk-test", ...options });
}

const ask = (client: OpenAI) =>
  client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: "hi" }] });

describe("a non-streaming SDK call behind a cutting edge", () => {
  test("without edgeTimeout, a cold start longer than the SDK's retries surfaces as the edge's 504", async () => {
    const { up, app, edge } = await setup({});
    const call = ask(sdk(edge.url)).then(
      () => "ok",
      (err: { status?: number }) => err.status,
    );
    await waitFor(() => app.hub.get("llama")?.pending === 1, "held");
    setTimeout(() => void up.start(), COLD_START_MS);
    expect(await call).toBe(504);
    expect(edge.cuts).toBe(3);
  });

  test("with edgeTimeout and an ETA, the SDK at defaults rides out the same cold start", async () => {
    const { up, app, edge, gate } = await setup(
      { limits: { edgeTimeout: `${EDGE_MS}ms`, clientTimeoutMargin: "300ms" } },
      { hold: { expectedColdStart: `${COLD_START_MS}ms` } },
    );
    const call = ask(sdk(edge.url));
    await waitFor(() => gate().pending === 1, "held");
    const started = setTimeout(() => void up.start(), COLD_START_MS);
    defer(() => clearTimeout(started));
    const res = await call;
    expect(res.choices[0]?.message.content).toBe("echo: hi");
    // coldfront answered before the edge ever had to cut.
    expect(edge.cuts).toBe(0);
    const outcomes = (
      (await (await fetch(`${app.adminUrl}/status`)).json()) as {
        targets: { llama: { outcomes: Record<string, number> } };
      }
    ).targets.llama.outcomes;
    expect(outcomes.cold_start_timeout).toBeGreaterThanOrEqual(1);
    expect((outcomes.replayed ?? 0) + (outcomes.forwarded ?? 0)).toBe(1);
  });

  test("with maxRetries 0 the SDK sees coldfront's retryable 503 cold_start_timeout, before the edge cuts", async () => {
    const { app, edge } = await setup({
      limits: { edgeTimeout: `${EDGE_MS}ms`, clientTimeoutMargin: "300ms" },
    });
    const err = (await ask(sdk(edge.url, { maxRetries: 0 })).catch((e: unknown) => e)) as {
      status: number;
      error: { type: string };
      headers: Headers;
    };
    expect(err.status).toBe(503);
    expect(err.error.type).toBe("cold_start_timeout");
    expect(err.headers.get("x-should-retry")).toBe("true");
    expect(edge.cuts).toBe(0);
    expect(app.hub.get("llama")?.pending).toBe(0);
  });

  test("a streaming call needs no edgeTimeout: keepalive comments keep the edge from cutting", async () => {
    const { up, edge } = await setup({ hold: { keepaliveAfter: "300ms", keepaliveInterval: "500ms" } });
    const call = (async () => {
      const stream = await sdk(edge.url).chat.completions.create({
        model: "llama",
        stream: true,
        messages: [{ role: "user", content: "hi there" }],
      });
      let text = "";
      for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
      return text;
    })();
    const started = setTimeout(() => void up.start(), 4000);
    defer(() => clearTimeout(started));
    expect((await call).trim()).toBe("echo: hi there");
    expect(edge.cuts).toBe(0);
  });
});
