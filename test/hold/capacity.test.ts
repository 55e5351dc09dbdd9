/**
 * Release at the backend's capacity (DESIGN.md "Request lifecycle" step 5; README "Release after
 * a cold start"): release.concurrency is a hard cap, release.maxInFlight bounds a black hole,
 * overload answers and connections dropped before their head put a replay back, and a held
 * stream that already has coldfront's early SSE head is put back like any other request.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, test } from "vitest";
import type { Gate } from "../../src/hold/gate.js";
import {
  errorBody,
  idOf,
  metricValue,
  postCompletion as post,
  startColdTarget,
  useCleanups,
  waitFor,
} from "../helpers/app.js";
import { echoHandler, type Handler } from "../helpers/upstream.js";

const defer = useCleanups();

/** Wraps a handler to record how many requests the backend holds at once. */
function counting(inner: Handler): { handler: Handler; now: () => number; most: () => number } {
  let now = 0;
  let most = 0;
  return {
    handler: (req, res, body) => {
      now++;
      most = Math.max(most, now);
      res.once("close", () => now--);
      inner(req, res, body);
    },
    now: () => now,
    most: () => most,
  };
}

const answerAfter =
  (ms: number): Handler =>
  (req, res, body) => {
    setTimeout(() => {
      if (!res.destroyed) echoHandler(req, res, body);
    }, ms);
  };

/** Holds `ids` in sending order: each is held before the next is sent. */
async function holdInOrder(url: string, gate: () => { pending: number }, ids: string[]) {
  const out: Promise<Response>[] = [];
  for (const id of ids) {
    out.push(post(url, id));
    const n = out.length;
    await waitFor(() => gate().pending === n, `${id} held`);
  }
  return out;
}

/** A readiness endpoint of its own, so the target can be ready while its upstream is not. */
async function healthServer(): Promise<{ url: string; ok: boolean; server: Server }> {
  const h = { url: "", ok: false, server: undefined as unknown as Server };
  h.server = createServer((_req, res) => {
    res.writeHead(h.ok ? 200 : 503);
    res.end();
  });
  await new Promise<void>((r) => h.server.listen(0, "127.0.0.1", r));
  h.url = `http://127.0.0.1:${(h.server.address() as AddressInfo).port}/health`;
  defer(() => new Promise((r) => h.server.close(r)));
  return h;
}

describe("release.concurrency is a hard cap", () => {
  test("non-streaming, concurrency 4: the backend never holds more than 4 during the release of 200 held", async () => {
    const c = counting(answerAfter(20));
    const { up, app, gate } = await startColdTarget(defer, {
      handler: c.handler,
      extra: {
        release: { concurrency: 4, initialWindow: 2 },
        limits: { maxPending: 500, maxClientShare: 1 },
      },
    });
    const held = Array.from({ length: 200 }, (_, i) => post(app.clientUrl, `c${i}`));
    await waitFor(() => gate().pending === 200, "200 held");
    await up.start();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    expect(up.seen).toHaveLength(200);
    expect(c.most()).toBeGreaterThan(1);
    expect(c.most()).toBeLessThanOrEqual(4);
    expect(await metricValue(app, 'coldfront_release_window{target="llama"}')).toBe(4);
  });

  test("concurrency 1: held requests reach the backend exactly in sending order", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: answerAfter(5),
      extra: { release: { concurrency: 1 } },
    });
    const ids = Array.from({ length: 30 }, (_, i) => `o${i}`);
    const held = await holdInOrder(app.clientUrl, gate, ids);
    await up.start();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    expect(up.seen.map((s) => idOf(s.body))).toEqual(ids);
  });
});

describe("back-pressure", () => {
  test("a backend that answers Envoy's overflow 503 past 32 at once: 2,000 held all complete with 200", async () => {
    let now = 0;
    let overflowed = 0;
    const { up, app, gate } = await startColdTarget(defer, {
      handler: (req, res, body) => {
        if (now >= 32) {
          overflowed++;
          res.writeHead(503, { "content-type": "text/plain" });
          res.end("upstream connect error or disconnect/reset before headers. reset reason: overflow");
          return;
        }
        now++;
        res.once("close", () => now--);
        answerAfter(10)(req, res, body);
      },
      extra: {
        limits: { maxPending: 5000, maxClientShare: 1, holdTimeout: "2m" },
        release: { concurrency: 64, initialWindow: 8, retryBackoff: "10ms", retryBackoffMax: "50ms" },
      },
    });
    const n = 2000;
    const held = Array.from({ length: n }, (_, i) => post(app.clientUrl, `v${i}`));
    await waitFor(() => gate().pending === n, `${n} held`, 30_000);
    await up.start();
    const answers = await Promise.all(held);
    const statuses = new Map<number, number>();
    for (const r of answers) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    expect(Object.fromEntries(statuses)).toEqual({ 200: n });
    // The backend really was pushed past its capacity, and each overflowed request went again.
    expect(overflowed).toBeGreaterThan(0);
    expect(up.seen).toHaveLength(n + overflowed);
    expect(await metricValue(app, 'coldfront_replay_retries_total{target="llama",reason="overloaded"}')).toBe(
      overflowed,
    );
  }, 120_000);

  test("a backend that resets the first connection before its head: the replay goes again and gets 200", async () => {
    let resets = 0;
    const { up, app, gate } = await startColdTarget(defer, {
      handler: (req, res, body) => {
        if (resets === 0) {
          resets++;
          req.socket.destroy();
          return;
        }
        echoHandler(req, res, body);
      },
    });
    const held = post(app.clientUrl, "r1");
    await waitFor(() => gate().pending === 1, "held");
    await up.start();
    const r = await held;
    expect(r.status).toBe(200);
    expect(JSON.parse(await r.text()).id).toBe("r1");
    expect(up.seen).toHaveLength(2);
    expect(
      await metricValue(app, 'coldfront_replay_retries_total{target="llama",reason="connection_dropped"}'),
    ).toBe(1);
  });

  test("past release.retries such tries, the answer is 502 upstream_error with x-should-retry: true", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: (req) => req.socket.destroy(),
      extra: { release: { retries: 2, retryBackoff: "10ms" } },
    });
    const held = post(app.clientUrl, "doomed");
    await waitFor(() => gate().pending === 1, "held");
    await up.start();
    const r = await held;
    expect(r.status).toBe(502);
    expect(r.headers.get("x-should-retry")).toBe("true");
    const e = await errorBody(r);
    expect(e.error.type).toBe("upstream_error");
    expect(e.error.message).toContain("release.retries");
    // The first try and two more.
    expect(up.seen).toHaveLength(3);
  });

  test("a warm request is never retried: an overload answer on the warm path goes to the client as it is", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: (_req, res) => {
        res.writeHead(429, { "content-type": "application/json", "retry-after": "3" });
        res.end('{"error":{"message":"slow down"}}');
      },
    });
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const r = await post(app.clientUrl, "warm");
    expect(r.status).toBe(429);
    expect(r.headers.get("retry-after")).toBe("3");
    expect(up.seen).toHaveLength(1);
  });
});

describe("a held stream that already has coldfront's early head", () => {
  test("its first replay refused (the gateway has no endpoint yet): it is put back and gets the full completion", async () => {
    const health = await healthServer();
    const { up, app, gate } = await startColdTarget(defer, {
      extra: {
        hold: { keepaliveAfter: "100ms", keepaliveInterval: "100ms" },
        release: { retryBackoff: "50ms" },
      },
      target: { readiness: { probe: { url: health.url, interval: "50ms", heldInterval: "20ms" } } },
    });
    const res = await post(app.clientUrl, "s1", { stream: true, n: 5 });
    // The early head came while held.
    expect(res.status).toBe(200);
    expect(gate().pending).toBe(1);
    // Ready by readiness, but the upstream's port is still closed: the replay is refused.
    health.ok = true;
    await waitFor(
      async () =>
        (await metricValue(
          app,
          'coldfront_replay_retries_total{target="llama",reason="connection_refused"}',
        )) > 0,
      "a refused replay",
    );
    await up.start();
    const text = await res.text();
    expect(text).not.toContain('"error"');
    for (let i = 0; i < 5; i++) expect(text).toContain(`"i":${i}`);
    expect(text.trim().endsWith("data: [DONE]")).toBe(true);
  });

  test("shutdown during its replay (no upstream head yet) ends it with a shutting_down SSE event", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: () => {}, // accepts and never answers
      extra: { hold: { keepaliveAfter: "100ms", keepaliveInterval: "100ms" } },
    });
    const res = await post(app.clientUrl, "s2", { stream: true });
    expect(res.status).toBe(200);
    const body = res.text();
    await up.start();
    await waitFor(() => up.seen.length === 1 && gate().pending === 0, "replay out");
    await app.shutdown(100);
    const text = await body;
    expect(text).toContain("data: ");
    expect(text).toContain('"type":"shutting_down"');
  });
});

describe("release.maxInFlight", () => {
  test("a silent upstream takes at most maxInFlight; every other held request is answered at its deadline", async () => {
    const c = counting(() => {}); // a black hole
    const { up, app, gate } = await startColdTarget(defer, {
      handler: c.handler,
      extra: {
        limits: { holdTimeout: "1500ms" },
        release: { concurrency: 4, maxInFlight: 5, slotTimeout: "20ms" },
      },
    });
    const early = Array.from({ length: 12 }, (_, i) => post(app.clientUrl, `b${i}`));
    await waitFor(() => gate().pending === 12, "12 held");
    await up.start();
    await waitFor(() => up.seen.length === 5, "5 sent");
    // Arrivals while ready queue behind the backlog: only capacity holds them.
    const late = ["late1", "late2"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 9, "7 + 2 waiting");
    expect(await metricValue(app, 'coldfront_replays_in_flight{target="llama"}')).toBe(5);
    const waiting = await Promise.all([...early.slice(5), ...late]);
    for (const r of waiting.slice(0, 7)) {
      expect(r.status).toBe(503);
      expect((await errorBody(r)).error.type).toBe("cold_start_timeout");
    }
    for (const r of waiting.slice(7)) {
      expect(r.status).toBe(503);
      expect(r.headers.get("retry-after")).not.toBeNull();
      expect((await errorBody(r)).error.type).toBe("overloaded");
    }
    expect(c.most()).toBe(5);
    expect(up.seen).toHaveLength(5);
    expect((app.hub.get("llama") as Gate).status()).toMatchObject({
      release: { inFlight: 5, maxInFlight: 5 },
    });
  });
});
