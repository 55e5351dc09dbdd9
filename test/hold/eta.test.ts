/**
 * README "Long cold starts": the cold-start ETA, learned per target from its recent cold starts,
 * and where a client sees it (comments, headers, Retry-After, /status, the gauge).
 */
import { describe, expect, test } from "vitest";
import { ColdStartEta } from "../../src/hold/eta.js";
import { errorBody, metricValue, startColdTarget, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

interface EtaStatus {
  state: string;
  lastColdStartMs: number | null;
  eta: {
    expectedMs: number | null;
    learned: boolean;
    samples: number;
    elapsedMs: number | null;
    remainingMs: number | null;
  };
  recentColdStarts: { at: string; ms: number }[];
}

describe("ColdStartEta", () => {
  test("unknown without a prior; the prior until one is seen; then a high percentile of the recent ones", () => {
    expect(new ColdStartEta(undefined).expectedMs).toBeUndefined();
    expect(new ColdStartEta(undefined).remainingMs(1000)).toBeUndefined();
    const eta = new ColdStartEta(90_000);
    expect(eta.expectedMs).toBe(90_000);
    eta.record(40_000);
    expect(eta.expectedMs).toBe(40_000);
    eta.record(10_000);
    expect(eta.expectedMs).toBe(40_000);
    for (let i = 0; i < 9; i++) eta.record(10_000);
    // 11 samples: p90 is the 10th smallest, still a 10 s one; one slow start among many fast.
    expect(eta.expectedMs).toBe(10_000);
    expect(eta.remainingMs(4_000)).toBe(6_000);
    expect(eta.remainingMs(60_000)).toBe(0);
    for (let i = 0; i < 30; i++) eta.record(5_000);
    expect(eta.samples).toHaveLength(20);
    expect(eta.expectedMs).toBe(5_000);
  });
});

describe("the ETA through the proxy", () => {
  test("learned from two cold starts of different lengths; shown in /status, the gauge, held answers' headers, stream comments and Retry-After", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      extra: {
        hold: { keepaliveAfter: "100ms", keepaliveInterval: "100ms" },
        limits: { clientTimeoutMargin: "200ms" },
      },
    });
    const status = async () =>
      ((await (await fetch(`${app.adminUrl}/status`)).json()) as { targets: Record<string, EtaStatus> })
        .targets.llama as EtaStatus;
    expect((await status()).eta.expectedMs).toBeNull();

    // Two cold starts: about 300 ms, then about 1.2 s.
    const coldStart = async (ms: number) => {
      const held = fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}" });
      await waitFor(() => gate().pending === 1, "held");
      await new Promise((r) => setTimeout(r, ms));
      await up.start();
      const res = await held;
      expect(res.status).toBe(200);
      const took = Number(res.headers.get("x-coldfront-cold-start-ms"));
      expect(took).toBeGreaterThanOrEqual(ms);
      expect(Number(res.headers.get("x-coldfront-held-ms"))).toBeGreaterThanOrEqual(ms);
      await up.stop();
      await waitFor(() => !gate().ready, "cold again", 10_000);
      return took;
    };
    const first = await coldStart(300);
    const second = await coldStart(1200);
    const s = await status();
    expect(s.recentColdStarts.map((c) => c.ms)).toEqual([first, second]);
    expect(s.eta.samples).toBe(2);
    // A high percentile: the slower of the two, so clients are not sent back too early.
    expect(s.eta.expectedMs).toBe(second);
    expect(await metricValue(app, 'coldfront_cold_start_eta_seconds{target="llama"}')).toBeCloseTo(
      second / 1000,
      2,
    );

    // A third cold period: a held stream's comments say how long is left.
    const stream = await fetch(`${app.clientUrl}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ stream: true }),
    });
    expect(stream.status).toBe(200);
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    const { value } = await reader.read();
    expect(new TextDecoder().decode(value)).toMatch(/^: waiting for llama, about \d+s left\n\n/);
    const during = await status();
    expect(during.state).toBe("waking");
    expect(during.eta.elapsedMs).toBeGreaterThanOrEqual(0);
    expect(during.eta.remainingMs).toBeLessThanOrEqual(second);

    // A client whose stated timeout runs out first hears the ETA as Retry-After: never more than
    // what is left, at least 1 s.
    const timedOut = await fetch(`${app.clientUrl}/v1/completions`, {
      method: "POST",
      body: "{}",
      headers: { "x-stainless-timeout": "0.5" },
    });
    expect(timedOut.status).toBe(503);
    expect((await errorBody(timedOut)).error.type).toBe("cold_start_timeout");
    const ms = Number(timedOut.headers.get("retry-after-ms"));
    expect(ms).toBeGreaterThanOrEqual(1000);
    expect(ms).toBeLessThanOrEqual(Math.max(1000, second));
    expect(Number(timedOut.headers.get("retry-after"))).toBe(Math.ceil(ms / 1000));
    await reader.cancel();
  });

  test("a configured prior is the ETA before any cold start was seen, and Retry-After aims the retry's hold at it", async () => {
    const { app, gate } = await startColdTarget(defer, {
      extra: { limits: { clientTimeoutMargin: "200ms" } },
      target: { hold: { expectedColdStart: "30s" } },
    });
    const t0 = performance.now();
    const res = await fetch(`${app.clientUrl}/v1/completions`, {
      method: "POST",
      body: "{}",
      headers: { "x-stainless-timeout": "2" },
    });
    const elapsed = performance.now() - t0;
    expect(res.status).toBe(503);
    expect(gate().pending).toBe(0);
    // 30 s expected, held for the client's 1.8 s: come back so that the next 1.8 s hold straddles
    // the expected readiness (30 s - elapsed - half a budget).
    const ms = Number(res.headers.get("retry-after-ms"));
    const expected = 30_000 - elapsed - 900;
    expect(ms).toBeGreaterThan(expected - 1500);
    expect(ms).toBeLessThan(expected + 1500);
  });
});
