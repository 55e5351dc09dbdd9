import OpenAI from "openai";
import { describe, expect, test } from "vitest";
import { clientTimeoutMs, holdBudget } from "../../src/proxy/client-timeout.js";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";
import { openaiChatHandler } from "../helpers/upstream.js";

describe("client-stated timeouts", () => {
  test("X-Stainless-Timeout and X-Stainless-Read-Timeout in seconds; the smaller wins", () => {
    expect(clientTimeoutMs({ "x-stainless-timeout": "600" })).toBe(600_000);
    expect(clientTimeoutMs({ "x-stainless-read-timeout": "2.5" })).toBe(2500);
    expect(clientTimeoutMs({ "x-stainless-timeout": "60", "x-stainless-read-timeout": "30" })).toBe(30_000);
    expect(clientTimeoutMs({ "x-stainless-timeout": "soon" })).toBeUndefined();
    expect(clientTimeoutMs({})).toBeUndefined();
  });

  test("the hold budget is the earlier of holdTimeout and the client's timeout less a margin", () => {
    expect(holdBudget(600_000, undefined, 2000)).toEqual({ ms: 600_000, clientBound: false });
    expect(holdBudget(600_000, 60_000, 2000)).toEqual({ ms: 58_000, clientBound: true });
    expect(holdBudget(10_000, 60_000, 2000)).toEqual({ ms: 10_000, clientBound: false });
    // A margin never eats more than half of a short client budget.
    expect(holdBudget(600_000, 2000, 2000)).toEqual({ ms: 1000, clientBound: true });
  });
});

describe("the SDK's own retry carries a request through a cold start longer than its timeout", () => {
  const defer = useCleanups();

  test("default retry settings, upstream up after the client's stated timeout", async () => {
    const { up, app } = await startColdTarget(defer, { handler: openaiChatHandler });
    // A 2 s stated timeout: coldfront answers a retryable 503 before it, and the retry rejoins.
    // openai-node 7 sends X-Stainless-Timeout for a timeout given per request.
    const client = new OpenAI({ baseURL: `${app.clientUrl}/v1`, apiKey: "sk-test" });
    const started = Date.now();
    const call = client.chat.completions.create(
      { model: "llama", messages: [{ role: "user", content: "wake" }] },
      { timeout: 2000 },
    );
    await waitFor(() => app.hub.get("llama")?.pending === 1, "held");
    setTimeout(() => void up.start(), 2500);
    const answer = await call;
    expect(answer.choices[0]?.message.content).toBe("echo: wake");
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    const text = await (await fetch(`${app.adminUrl}/metrics`)).text();
    expect(text).toMatch(/coldfront_requests_total\{target="llama",outcome="cold_start_timeout"\} [1-9]/);
    expect(text).toContain('coldfront_requests_total{target="llama",outcome="replayed"} 1');
    // The SDK never had to give up on its own.
    expect(text).toContain('coldfront_requests_total{target="llama",outcome="client_aborted"} 0');
    expect(up.seen[0]?.headers["x-stainless-retry-count"]).not.toBe("0");
  });
});
