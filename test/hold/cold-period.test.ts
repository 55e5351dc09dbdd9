/**
 * The cold period ends only at ready (README "Long cold starts"): clients that give up do not
 * make the learned cold start shorter; one left without demand past the hold timeout starts anew.
 */
import { describe, expect, test } from "vitest";
import { ColdPeriod } from "../../src/hold/cold-period.js";
import type { Gate } from "../../src/hold/gate.js";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

describe("ColdPeriod", () => {
  test("demand that goes away does not end the period; ready does, and records it", () => {
    const p = new ColdPeriod(undefined, 10_000);
    expect(p.begin(1000)).toBe(true);
    p.idle(1500);
    expect(p.active).toBe(true);
    expect(p.begin(4000)).toBe(false);
    expect(p.end(9000)).toBe(8000);
    expect(p.eta.expectedMs).toBe(8000);
    expect(p.active).toBe(false);
  });

  test("a period idle for longer than staleAfter starts anew with the next demand", () => {
    const p = new ColdPeriod(undefined, 10_000);
    p.begin(0);
    p.idle(100);
    expect(p.begin(20_000)).toBe(true);
    expect(p.end(21_000)).toBe(1000);
  });
});

describe("clients that give up during a cold start", () => {
  test("the cold start learned is from the first held request until ready, not until the last client left", async () => {
    const { up, app, gate } = await startColdTarget(defer, {});
    const started = performance.now();
    // The client says it gives up after 1 s: it is answered before then and leaves.
    const r = await fetch(`${app.clientUrl}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-stainless-timeout": "1" },
      body: "{}",
    });
    expect(r.status).toBe(503);
    await r.text();
    expect(gate().pending).toBe(0);
    await new Promise((res) => setTimeout(res, 700));
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const elapsed = performance.now() - started;
    const last = (app.hub.get("llama") as Gate).status().lastColdStartMs as number;
    expect(last).toBeGreaterThan(1000);
    expect(last).toBeLessThanOrEqual(elapsed);
  });
});
