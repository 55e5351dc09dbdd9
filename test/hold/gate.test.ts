/**
 * The request lifecycle of DESIGN.md against real servers on ephemeral ports: coldfront in
 * front of an upstream that is down (port closed) until the test brings it up.
 */
import { request as httpRequest } from "node:http";
import { describe, expect, test } from "vitest";
import type { App, AppOptions } from "../../src/app.js";
import type { ConfigInput } from "../../src/config/schema.js";
import type { ObserverFactory } from "../../src/observe/observer.js";
import { errorBody, metricValue, startColdTarget, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

/** coldfront with one probe target whose upstream is down until `up.start()`. */
const coldSetup = (
  extra: Partial<ConfigInput> = {},
  target: Record<string, unknown> = {},
  app: AppOptions = {},
) => startColdTarget(defer, { extra, target, app });

function post(app: App, body: unknown, init: RequestInit = {}) {
  return fetch(`${app.clientUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  });
}

const metric = metricValue;

describe("hold and release", () => {
  test("a cold burst of mixed streaming and plain requests is answered once ready, each reaching the upstream exactly once", async () => {
    const { up, app, gate } = await coldSetup();
    const n = 40;
    const calls = Array.from({ length: n }, (_, i) =>
      post(app, { id: `r${i}`, stream: i % 2 === 0, n: 3 }).then(async (res) => ({
        status: res.status,
        held: res.headers.get("x-coldfront-held-ms"),
        text: await res.text(),
        i,
      })),
    );
    await waitFor(() => gate().pending === n, `${n} held`);
    expect(up.seen).toHaveLength(0);
    expect(await metric(app, 'coldfront_pending_requests{target="llama"}')).toBe(n);
    await up.start();
    const results = await Promise.all(calls);
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(Number(r.held)).toBeGreaterThan(0);
      if (r.i % 2 === 0) {
        expect(r.text).toContain(`"id":"r${r.i}"`);
        expect(r.text.trim().endsWith("data: [DONE]")).toBe(true);
      } else {
        expect(JSON.parse(r.text).id).toBe(`r${r.i}`);
      }
    }
    const ids = up.seen.filter((s) => s.url === "/v1/chat/completions").map((s) => JSON.parse(s.body).id);
    expect(ids).toHaveLength(n);
    expect(new Set(ids).size).toBe(n);
    expect(gate().pending).toBe(0);
    await waitFor(() => gate().inFlight === 0, "in flight back to 0");
    expect(await metric(app, 'coldfront_requests_total{target="llama",outcome="replayed"}')).toBe(n);
    expect(await metric(app, 'coldfront_cold_start_duration_seconds_count{target="llama"}')).toBe(1);
  });

  /**
   * 8 requests held in order, then released; records the order in which the gate released them
   * (an observer sees holdEnded("released") as each replay starts) and how many ran at once at
   * the upstream before the first answer.
   */
  async function releaseRun(concurrency: number) {
    const released: string[] = [];
    const observe: ObserverFactory = {
      start: (facts) => {
        const id = facts.headers["x-test-id"] as string;
        return {
          routed() {},
          held() {},
          holdEnded(outcome) {
            if (outcome === "released") released.push(id);
          },
          attemptStarted: () => undefined,
          attemptHead() {},
          attemptEnded() {},
          finished() {},
        };
      },
      stop: async () => {},
    };
    const { up, app, gate } = await coldSetup(
      { release: { concurrency, slotTimeout: "5s" } },
      {},
      { observe },
    );
    let running = 0;
    let firstWave = 0;
    let answered = false;
    up.handler = (_req, res) => {
      running++;
      if (!answered) firstWave = Math.max(firstWave, running);
      setTimeout(() => {
        answered = true;
        running--;
        res.end("{}");
      }, 100);
    };
    const calls: Promise<Response>[] = [];
    for (let i = 0; i < 8; i++) {
      calls.push(post(app, { id: `r${i}` }, { headers: { "x-test-id": `r${i}` } }));
      await waitFor(() => gate().pending === i + 1, "held in order");
    }
    await up.start();
    for (const r of await Promise.all(calls)) expect(r.status).toBe(200);
    return { firstWave, released };
  }

  test("release is in arrival order", async () => {
    const { released } = await releaseRun(2);
    expect(released).toEqual(Array.from({ length: 8 }, (_, i) => `r${i}`));
  });

  test("the first release wave is bounded by release.concurrency (the window's start)", async () => {
    const { firstWave } = await releaseRun(3);
    expect(firstWave).toBe(3);
  });

  test("warm requests are forwarded at once with X-Forwarded-* and no held header", async () => {
    const { up, app, gate } = await coldSetup();
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const res = await post(
      app,
      { id: "warm" },
      { headers: { "content-type": "application/json", authorization: "Bearer sk-x" } },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("x-coldfront-held-ms")).toBeNull();
    expect(res.headers.get("x-upstream")).toBe("yes");
    await res.text();
    const seen = up.seen.find((s) => s.url === "/v1/chat/completions");
    expect(seen?.headers.authorization).toBe("Bearer sk-x");
    expect(seen?.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen?.headers["x-forwarded-proto"]).toBe("http");
    expect(seen?.headers["x-forwarded-host"]).toBe(new URL(app.clientUrl).host);
  });

  test("the client connection is kept alive across warm requests", async () => {
    const { up, app, gate } = await coldSetup();
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const { Agent } = await import("node:http");
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const reused: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest(`${app.clientUrl}/v1/x`, { method: "POST", agent }, (res) => {
          res.resume();
          res.on("end", () => resolve());
        });
        req.on("error", reject);
        req.end("{}");
        reused.push(req.reusedSocket);
      });
    }
    agent.destroy();
    expect(reused).toEqual([false, true, true]);
  });
});

describe("refusals", () => {
  test("past holdTimeout: 503 cold_start_timeout with Retry-After and x-should-retry", async () => {
    const { up, app, gate } = await coldSetup({ limits: { holdTimeout: "300ms" } });
    const res = await post(app, { id: "late" });
    expect(res.status).toBe(503);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(res.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect(res.headers.get("x-should-retry")).toBe("true");
    const body = await errorBody(res);
    expect(body.error.type).toBe("cold_start_timeout");
    expect(body.error.code).toBe("cold_start_timeout");
    expect(gate().pending).toBe(0);
    expect(up.seen).toHaveLength(0);
    expect(await metric(app, 'coldfront_requests_total{target="llama",outcome="cold_start_timeout"}')).toBe(
      1,
    );
  });

  test("past maxPending: 503 queue_full at once, the held ones unaffected", async () => {
    const { up, app, gate } = await coldSetup({ limits: { maxPending: 2, maxClientShare: 1 } });
    const held = [post(app, { id: "a" }), post(app, { id: "b" })];
    await waitFor(() => gate().pending === 2, "2 held");
    const res = await post(app, { id: "c" });
    expect(res.status).toBe(503);
    expect((await errorBody(res)).error.type).toBe("queue_full");
    expect(gate().pending).toBe(2);
    await up.start();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
  });

  test("a body over maxBodyBytes: 413 body_too_large", async () => {
    const { app, gate } = await coldSetup({ limits: { maxBodyBytes: "1KiB" } });
    const res = await fetch(`${app.clientUrl}/v1/completions`, {
      method: "POST",
      body: "x".repeat(4096),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(413);
    expect((await errorBody(res)).error.type).toBe("body_too_large");
    expect(gate().pending).toBe(0);
  });

  test("a non-wake method at zero: 503 target_cold without holding", async () => {
    const { app, gate } = await coldSetup();
    const res = await fetch(`${app.clientUrl}/v1/something`);
    expect(res.status).toBe(503);
    expect((await errorBody(res)).error.type).toBe("target_cold");
    expect(gate().pending).toBe(0);
  });
});

describe("client gone", () => {
  test("held requests whose clients abort are dropped at once and never reach the upstream", async () => {
    const { up, app, gate } = await coldSetup();
    const controllers = Array.from({ length: 5 }, () => new AbortController());
    const calls = controllers.map((c, i) =>
      post(app, { id: `gone${i}` }, { signal: c.signal }).catch((e: Error) => e),
    );
    const kept = post(app, { id: "kept" });
    await waitFor(() => gate().pending === 6, "6 held");
    for (const c of controllers) c.abort();
    await Promise.all(calls);
    await waitFor(() => gate().pending === 1, "aborted ones dropped");
    await up.start();
    expect((await kept).status).toBe(200);
    expect(up.seen.filter((s) => s.url === "/v1/chat/completions").map((s) => JSON.parse(s.body).id)).toEqual(
      ["kept"],
    );
    expect(await metric(app, 'coldfront_requests_total{target="llama",outcome="client_aborted"}')).toBe(5);
  });

  test("a forwarded request is aborted upstream when its client goes away", async () => {
    const { up, app, gate } = await coldSetup();
    let upstreamClosed = false;
    up.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: first\n\n");
      res.on("close", () => {
        upstreamClosed = true;
      });
    };
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const c = new AbortController();
    const res = await post(app, { stream: true }, { signal: c.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    c.abort();
    await waitFor(() => upstreamClosed, "upstream request closed");
    await waitFor(() => gate().inFlight === 0, "in flight back to 0");
  });
});

describe("streaming", () => {
  test("SSE chunks are relayed as they arrive, not all at the end", async () => {
    const { up, app, gate } = await coldSetup();
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const res = await post(app, { stream: true, n: 5, gapMs: 150 });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const arrivals: number[] = [];
    const t0 = Date.now();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      arrivals.push(Date.now() - t0);
    }
    // Five writes 150 ms apart: buffering would deliver them in one or two reads at the end.
    expect(arrivals.length).toBeGreaterThanOrEqual(4);
    expect((arrivals.at(-1) as number) - (arrivals[0] as number)).toBeGreaterThanOrEqual(400);
  });
});

describe("replay safety", () => {
  test("a gateway 'no endpoints' 503 after readiness is retried transparently until the endpoint appears", async () => {
    const { up, app, gate } = await coldSetup();
    let coldAnswers = 3;
    up.handler = (req, res, body) => {
      if (req.url === "/health") return void res.end("ok");
      if (coldAnswers > 0) {
        coldAnswers--;
        res.writeHead(503, { "x-llm-d-request-dropped-reason": "rejected-no-endpoints" });
        res.end("no endpoints");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true, body }));
    };
    const call = post(app, { id: "retry-me" });
    await waitFor(() => gate().pending === 1, "held");
    await up.start();
    const res = await call;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { ok: boolean }).ok).toBe(true);
    expect(await metric(app, 'coldfront_replay_retries_total{target="llama",reason="no_endpoints"}')).toBe(3);
    expect(up.seen.filter((s) => s.url === "/v1/chat/completions")).toHaveLength(4);
  });

  test("connection refused on a warm target puts the request on hold instead of failing it", async () => {
    const { up, app, gate } = await coldSetup({}, { readiness: undefined });
    // No readiness source: always 'ready', but the port is closed.
    const call = post(app, { id: "refused" });
    await waitFor(() => gate().pending === 1, "held after refusal", 5000);
    await up.start();
    expect((await call).status).toBe(200);
    expect(
      await metric(app, 'coldfront_replay_retries_total{target="llama",reason="connection_refused"}'),
    ).toBeGreaterThanOrEqual(1);
  });

  test("an upstream that crashes mid-request gives 502 upstream_error and leaves counts right", async () => {
    const { up, app, gate } = await coldSetup();
    up.handler = (req, res) => {
      if (req.url === "/health") return void res.end("ok");
      res.socket?.destroy();
    };
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const res = await post(app, { id: "crash" });
    expect(res.status).toBe(502);
    expect((await errorBody(res)).error.type).toBe("upstream_error");
    await waitFor(() => gate().inFlight === 0 && gate().pending === 0, "counts back to 0");
    expect(up.seen.filter((s) => s.url === "/v1/chat/completions")).toHaveLength(1);
  });

  test("nothing is retried once the upstream's first byte went to the client", async () => {
    const { up, app, gate } = await coldSetup();
    up.handler = (req, res) => {
      if (req.url === "/health") return void res.end("ok");
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: partial\n\n");
      setTimeout(() => res.socket?.destroy(), 20);
    };
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const res = await post(app, { stream: true });
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
    await waitFor(() => gate().inFlight === 0, "in flight back to 0");
    expect(up.seen.filter((s) => s.url === "/v1/chat/completions")).toHaveLength(1);
  });
});

describe("invariants under races", () => {
  test("aborts, deadlines and a release racing: every request answered once, pending equals the unsettled held", async () => {
    const { up, app, gate } = await coldSetup({
      limits: { holdTimeout: "400ms", maxClientShare: 1 },
      release: { concurrency: 4 },
    });
    const n = 60;
    const outcomes: (number | "aborted")[] = [];
    const calls = Array.from({ length: n }, (_, i) => {
      const c = new AbortController();
      // A third abort at staggered times; the rest wait for release or deadline.
      if (i % 3 === 0) setTimeout(() => c.abort(), 50 + (i % 7) * 40);
      return post(app, { id: `x${i}` }, { signal: c.signal }).then(
        async (r) => {
          await r.text();
          outcomes.push(r.status);
        },
        () => outcomes.push("aborted"),
      );
    });
    // Ready right around the deadline, so releases, timeouts and aborts interleave.
    setTimeout(() => void up.start(), 380);
    await Promise.all(calls);
    expect(outcomes).toHaveLength(n);
    for (const o of outcomes) expect([200, 503, "aborted"]).toContain(o);
    await waitFor(() => gate().pending === 0 && gate().inFlight === 0, "all settled");
    const total = await Promise.all(
      ["replayed", "cold_start_timeout", "client_aborted"].map((o) =>
        metric(app, `coldfront_requests_total{target="llama",outcome="${o}"}`),
      ),
    );
    // Each request settled exactly once: the outcome counters add up to the requests sent.
    expect(total.reduce((a, b) => a + b, 0)).toBe(n);
    const reached = up.seen.filter((s) => s.url === "/v1/chat/completions").map((s) => JSON.parse(s.body).id);
    expect(new Set(reached).size).toBe(reached.length);
  });
});
