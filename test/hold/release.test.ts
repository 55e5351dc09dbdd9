/**
 * Release after a cold start (README "Release after a cold start"): paced by starts, never by
 * whole generations; strict FIFO through cold answers; no replay that hangs for ever; backoff per
 * round; and every waiting client answered at shutdown.
 */
import { describe, expect, test } from "vitest";
import type { Gate } from "../../src/hold/gate.js";
import {
  errorBody,
  idOf,
  postCompletion as post,
  startColdTarget,
  useCleanups,
  waitFor,
} from "../helpers/app.js";
import type { Handler } from "../helpers/upstream.js";

const defer = useCleanups();

/** Answers Envoy's "no healthy upstream" to the first `n` requests, then `{id}` in JSON. */
function coldFirst(n: number): { handler: Handler; left: () => number } {
  let coldLeft = n;
  const handler: Handler = (_req, res, body) => {
    if (coldLeft > 0) {
      coldLeft--;
      res.writeHead(503, { "content-type": "text/plain" });
      res.end("no healthy upstream");
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id: body ? idOf(body) : null }));
  };
  return { handler, left: () => coldLeft };
}

/** Answers after `ms`, like a non-streaming generation whose head comes only at the end. */
const slowGeneration =
  (ms: number): Handler =>
  (_req, res, body) => {
    setTimeout(() => {
      if (res.destroyed) return;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: idOf(body) }));
    }, ms);
  };

describe("release is paced by starts, not by whole generations", () => {
  test("a backlog on a ready target with long generations: every request answered, none cold_start_timeout", async () => {
    // Counting a replay until its generation ended, 2 slots and 1 s generations would release 2
    // per second: the 10 requests below would need 5 s, past the 3 s hold budget.
    const { up, app, gate } = await startColdTarget(defer, {
      handler: slowGeneration(1000),
      extra: { limits: { holdTimeout: "3s" }, release: { concurrency: 2, slotTimeout: "100ms" } },
    });
    const early = ["e1", "e2", "e3", "e4"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 4, "4 held while cold");
    await up.start();
    await waitFor(() => gate().ready, "ready");
    // These arrive while the target is ready but the backlog is still queued.
    const late = ["l1", "l2", "l3", "l4", "l5", "l6"].map((id) => post(app.clientUrl, id));
    const answers = await Promise.all([...early, ...late]);
    for (const r of answers) expect(r.status, await r.clone().text()).toBe(200);
    expect(up.seen.map((s) => idOf(s.body)).sort()).toEqual(
      ["e1", "e2", "e3", "e4", "l1", "l2", "l3", "l4", "l5", "l6"].sort(),
    );
  });

  test("the window starts at release.initialWindow and grows by one per replay taken up to release.concurrency, never past it; a cold answer resets it", async () => {
    let coldLeft = 0;
    const { up, app, gate } = await startColdTarget(defer, {
      handler: (req, res, body) => {
        if (coldLeft > 0) {
          coldLeft--;
          res.writeHead(503);
          res.end("no healthy upstream");
          return;
        }
        slowGeneration(800)(req, res, body);
      },
      extra: { release: { concurrency: 6, initialWindow: 2, slotTimeout: "100ms", retryBackoff: "50ms" } },
    });
    const window = () => ((app.hub.get("llama") as Gate).status() as { releaseWindow: number }).releaseWindow;
    const ids = Array.from({ length: 12 }, (_, i) => `w${i}`);
    const held = ids.map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 12, "12 held");
    expect(window()).toBe(2);
    await up.start();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    // Each of the 12 was taken (its 800 ms generation outlived the 100 ms slot): 2 + 12, capped at 6.
    expect(window()).toBe(6);

    await up.stop();
    await waitFor(() => !gate().ready, "cold again", 10_000);
    coldLeft = 1;
    const again = post(app.clientUrl, "again");
    await waitFor(() => gate().pending === 1, "held");
    await up.start();
    expect((await again).status).toBe(200);
    // Back to 2 for the new cold period, then a cold answer (reset) and one taken.
    expect(window()).toBe(3);
  });

  test("the warm path resumes once the queue is empty, while replays are still generating", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: (req, res, body) => slowGeneration(idOf(body) === "warm" ? 0 : 1500)(req, res, body),
      extra: { release: { concurrency: 1, slotTimeout: "50ms" } },
    });
    const held = ["h1", "h2"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 2, "held");
    await up.start();
    await waitFor(() => gate().pending === 0 && gate().inFlight === 2, "both replays out, queue empty");
    const warm = await post(app.clientUrl, "warm");
    expect(warm.status).toBe(200);
    // Answered while both 1.5 s generations still run: it did not queue behind them.
    expect(gate().inFlight).toBe(2);
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
  });
});

describe("strict FIFO through cold answers", () => {
  test("a whole concurrent batch answered cold is re-queued in arrival order, ahead of later arrivals", async () => {
    const cold = coldFirst(6);
    const { up, app, gate } = await startColdTarget(defer, {
      handler: cold.handler,
      extra: { release: { concurrency: 16, retryBackoff: "800ms", retryBackoffMax: "800ms" } },
    });
    const held = ["r1", "r2", "r3", "r4", "r5", "r6"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 6, "6 held");
    const g = app.hub.get("llama") as Gate;
    const before = g.queuedSeqs();
    await up.start();
    // The batch goes out, comes back cold, and waits out the backoff in the queue.
    await waitFor(() => cold.left() === 0 && gate().pending === 6, "the cold batch is back in the queue");
    const late = post(app.clientUrl, "late");
    await waitFor(() => gate().pending === 7, "a later arrival queued behind");
    const after = g.queuedSeqs();
    expect(after.slice(0, 6)).toEqual(before);
    expect(after).toEqual([...after].sort((a, b) => a - b));
    for (const r of await Promise.all([...held, late])) expect(r.status).toBe(200);
    expect(up.seen.filter((s) => s.url !== "/health")).toHaveLength(13);
  });

  test("backoff grows once per round, not once per cold answer of the round", async () => {
    let coldLeft = 5;
    const { up, app, gate } = await startColdTarget(defer, {
      handler: (_req, res) => {
        if (coldLeft > 0) {
          coldLeft--;
          res.writeHead(503);
          res.end("no healthy upstream");
          return;
        }
        res.end("ok");
      },
      extra: { release: { concurrency: 16, retryBackoff: "300ms", retryBackoffMax: "10s" } },
    });
    const held = ["1", "2", "3", "4", "5"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 5, "5 held");
    await up.start();
    await waitFor(() => coldLeft === 0 && gate().pending === 5, "the whole batch answered cold");
    const status = (app.hub.get("llama") as Gate).status() as { backoffMs: number };
    // Per answer it would be 300 × 2^4 = 4.8 s.
    expect(status.backoffMs).toBe(300);
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
  });
});

describe("an upstream that accepts and never answers", () => {
  const silentFor =
    (silent: (id: string) => boolean): Handler =>
    (_req, res, body) => {
      if (silent(idOf(body))) return; // accepted, never answered
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: idOf(body) }));
    };

  test("with limits.upstreamHeadersTimeout: 504 upstream_timeout within the bound, not replayed; the rest released", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: silentFor((id) => id === "silent"),
      extra: {
        limits: { upstreamHeadersTimeout: "400ms" },
        release: { concurrency: 1, slotTimeout: "50ms" },
      },
    });
    const silent = post(app.clientUrl, "silent");
    await waitFor(() => gate().pending === 1, "held");
    const others = ["a", "b"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 3, "3 held");
    await up.start();
    for (const r of await Promise.all(others)) expect(r.status).toBe(200);
    const r = await silent;
    expect(r.status).toBe(504);
    expect(r.headers.get("x-should-retry")).toBe("false");
    const e = await errorBody(r);
    expect(e.error.type).toBe("upstream_timeout");
    expect(e.error.message).toContain("limits.upstreamHeadersTimeout");
    expect(up.seen.filter((s) => idOf(s.body) === "silent")).toHaveLength(1);
  });

  test("without a headers timeout, a silent replay never stops the others; at shutdown it is answered shutting_down", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: silentFor((id) => id.startsWith("silent")),
      extra: { release: { concurrency: 2, slotTimeout: "50ms" } },
    });
    const silent = ["silent1", "silent2", "silent3"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 3, "silent ones held first");
    const others = ["a", "b", "c"].map((id) => post(app.clientUrl, id));
    await waitFor(() => gate().pending === 6, "6 held");
    await up.start();
    for (const r of await Promise.all(others)) expect(r.status).toBe(200);
    await waitFor(() => up.seen.filter((s) => idOf(s.body).startsWith("silent")).length === 3, "all sent");
    // A warm request to the silent upstream, too: it has no head either when shutdown comes.
    const warmSilent = post(app.clientUrl, "silent-warm");
    await waitFor(() => up.seen.some((s) => idOf(s.body) === "silent-warm"), "warm one sent");
    await app.shutdown(200);
    for (const r of await Promise.all([...silent, warmSilent])) {
      expect(r.status).toBe(503);
      expect((await errorBody(r)).error.type).toBe("shutting_down");
      expect(r.headers.get("retry-after")).toBe("1");
    }
  });
});

describe("backoff on the warm path", () => {
  test("a cold answer to a non-wake request on the warm path backs off, and the warm path comes back by itself", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      handler: coldFirst(1).handler,
      extra: { release: { retryBackoff: "100ms" } },
    });
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const g = await fetch(`${app.clientUrl}/v1/models/x`);
    expect(g.status).toBe(503);
    expect((await errorBody(g)).error.type).toBe("target_cold");
    const backingOff = () => ((app.hub.get("llama") as Gate).status() as { backoffMs: number }).backoffMs;
    expect(backingOff()).toBe(100);
    await new Promise((r) => setTimeout(r, 250));
    // The backoff's end pumped the release: the warm path takes this one, it is not held.
    const warm = await post(app.clientUrl, "after");
    expect(warm.status).toBe(200);
    expect(warm.headers.get("x-coldfront-held-ms")).toBeNull();
  });
});

describe("a large release yields to the event loop", () => {
  test("with no release window (concurrency 0), 200 held start at most 64 per turn of the loop", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      extra: { release: { concurrency: 0 }, limits: { maxPending: 1000 } },
    });
    const n = 200;
    const held = Array.from({ length: n }, (_, i) => post(app.clientUrl, `y${i}`));
    await waitFor(() => gate().pending === n, `${n} held`);
    // Sample pending once per turn (setImmediate), bounded by a deadline: the largest drop between
    // two samples is what one synchronous stretch of the release started.
    let last = gate().pending;
    let maxDrop = 0;
    let watching = true;
    const deadline = Date.now() + 30_000;
    const watch = (): void => {
      const p = gate().pending;
      maxDrop = Math.max(maxDrop, last - p);
      last = p;
      if (watching && p > 0 && Date.now() < deadline) setImmediate(watch);
    };
    setImmediate(watch);
    await up.start();
    const answers = await Promise.all(held);
    watching = false;
    for (const r of answers) expect(r.status).toBe(200);
    expect(maxDrop).toBeGreaterThan(0);
    expect(maxDrop).toBeLessThanOrEqual(64);
  });
});
