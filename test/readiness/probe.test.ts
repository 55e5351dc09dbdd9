/**
 * The probe readiness source (DESIGN.md "Readiness sources": probe) against a real HTTP server
 * whose health answers follow a script: hysteresis of `failureThreshold`, the pace after a
 * failure, and the immediate cold-to-ready step.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { type ProbeOptions, ProbeSource } from "../../src/readiness/probe.js";
import { testLogger, useCleanups, waitFor } from "../helpers/app.js";

const cleanup = useCleanups();

/**
 * A health endpoint answering the statuses of `script` in order, then `then` for ever; `served`
 * counts the probes it answered.
 */
async function health(script: number[], then = 200) {
  const h = { script: [...script], then, served: 0 };
  const server = createServer((_req, res) => {
    h.served++;
    res.writeHead(h.script.shift() ?? h.then).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { h, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/health` };
}

/** A started source; `changes` records every onChange with the probes answered by then. */
async function probe(url: string, o: Partial<ProbeOptions>, served: () => number) {
  const s = new ProbeSource(
    "llama",
    { url, interval: 10, heldInterval: 10, timeout: 2000, failureThreshold: 3, ...o },
    testLogger(),
  );
  const changes: { ready: boolean; at: number }[] = [];
  s.onChange((ready) => changes.push({ ready, at: served() }));
  cleanup(() => s.stop());
  await s.start();
  return { s, changes };
}

describe("ProbeSource", () => {
  it("a probe URL that flaps (one failure between successes) never makes a ready target cold", async () => {
    const flaps = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 200 : 500));
    const { h, url } = await health(flaps);
    const { s, changes } = await probe(url, {}, () => h.served);
    await waitFor(() => h.served >= flaps.length, "every probe of the script", 10_000);
    expect(changes.map((c) => c.ready)).toEqual([true]);
    expect(s.ready).toBe(true);
  });

  it("turns cold after failureThreshold failures in a row, not one before; ready again on the first success", async () => {
    // ok, 2 failures (still ready), ok, 3 failures (cold at the third), ok (ready at once).
    const { h, url } = await health([200, 500, 500, 200, 500, 500, 500, 200]);
    const { s, changes } = await probe(url, {}, () => h.served);
    await waitFor(() => h.served >= 8 && changes.length >= 3, "the script to play out", 10_000);
    expect(changes).toEqual([
      { ready: true, at: 1 },
      { ready: false, at: 7 },
      { ready: true, at: 8 },
    ]);
    expect(s.status()).toMatchObject({ failuresInARow: 0, lastError: null });
  });

  it("with failureThreshold 1, one failure is enough", async () => {
    const { h, url } = await health([200, 500]);
    const { changes } = await probe(url, { failureThreshold: 1 }, () => h.served);
    await waitFor(() => changes.length >= 3, "ready, cold, ready");
    expect(changes).toEqual([
      { ready: true, at: 1 },
      { ready: false, at: 2 },
      { ready: true, at: 3 },
    ]);
  });

  it("confirms a failure of a ready target at the held pace, not after whole intervals", async () => {
    const { h, url } = await health([200], 503);
    // An interval longer than the test: only the held pace can bring the next probes in time.
    const { s, changes } = await probe(url, { interval: 3_600_000, heldInterval: 20 }, () => h.served);
    expect(s.ready).toBe(true);
    // One request held and gone at once: demand asks for one probe now, and nothing stays held.
    s.demand({ pending: 1, inFlight: 0 });
    s.demand({ pending: 0, inFlight: 0 });
    await waitFor(() => !s.ready, "cold after three failures in a row");
    expect(changes).toEqual([
      { ready: true, at: 1 },
      { ready: false, at: 4 },
    ]);
    expect(s.status()).toMatchObject({ failuresInARow: 3, lastError: "status 503" });
  });

  it("is synced and cold after a first failed probe, and ready on the first success after it", async () => {
    const { h, url } = await health([503, 503]);
    const { s, changes } = await probe(url, {}, () => h.served);
    expect(s.synced).toBe(true);
    expect(s.ready).toBe(false);
    await waitFor(() => s.ready, "ready");
    expect(changes).toEqual([{ ready: true, at: 3 }]);
  });
});
