import { describe, expect, test } from "vitest";
import { errorBody, startColdTarget, startTestApp, useCleanups, waitFor } from "../helpers/app.js";
import { Upstream } from "../helpers/upstream.js";

const defer = useCleanups();

describe("admin port", () => {
  test("every gauge series exists from start at 0, for every target", async () => {
    const port = await Upstream.reservePort();
    const app = await startTestApp({
      targets: [
        {
          name: "a",
          upstream: `http://127.0.0.1:${port}`,
          readiness: { probe: { url: `http://127.0.0.1:${port}/health` } },
        },
        { name: "b", upstream: `http://127.0.0.1:${port}` },
      ],
    });
    defer(() => app.close());
    const text = await (await fetch(`${app.adminUrl}/metrics`)).text();
    for (const t of ["a", "b"]) {
      expect(text).toContain(`coldfront_pending_requests{target="${t}"} 0`);
      expect(text).toContain(`coldfront_in_flight_requests{target="${t}"} 0`);
      expect(text).toContain(`coldfront_requests_total{target="${t}",outcome="forwarded"} 0`);
      expect(text).toContain(`coldfront_replay_retries_total{target="${t}",reason="no_endpoints"} 0`);
      // Histograms too, so PromQL's increase() counts a pod's first cold start.
      expect(text).toContain(`coldfront_cold_start_duration_seconds_count{target="${t}"} 0`);
      expect(text).toContain(`coldfront_hold_duration_seconds_count{target="${t}"} 0`);
    }
    expect(text).toContain('coldfront_target_ready{target="a"} 0');
    expect(text).toContain('coldfront_target_ready{target="b"} 1');
    expect(text).toContain("# TYPE coldfront_hold_duration_seconds histogram");
    expect(text).toContain("# TYPE coldfront_cold_start_duration_seconds histogram");
    expect(text).toContain("process_cpu_seconds_total");
  });

  test("/healthz, /readyz (a cold target is normal), /status and /keda/targets", async () => {
    const { up, app } = await startColdTarget(defer);
    expect((await fetch(`${app.adminUrl}/healthz`)).status).toBe(200);
    await waitFor(
      async () => (await fetch(`${app.adminUrl}/readyz`)).status === 200,
      "readyz after first probe",
    );

    const held = fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}" });
    await waitFor(() => app.hub.get("llama")?.pending === 1, "held");
    const keda = await (await fetch(`${app.adminUrl}/keda/targets/llama`)).json();
    expect(keda).toEqual({ target: "llama", pending: 1, inFlight: 0, ready: false });
    type Status = {
      targets: Record<
        string,
        { state: string; pending: number; readiness: { kind: string }; lastColdStartMs: number }
      >;
    };
    const status = (await (await fetch(`${app.adminUrl}/status`)).json()) as Status;
    expect(status.targets.llama?.state).toBe("waking");
    expect(status.targets.llama?.pending).toBe(1);
    expect(status.targets.llama?.readiness.kind).toBe("probe");

    await up.start();
    expect((await held).status).toBe(200);
    const after = (await (await fetch(`${app.adminUrl}/status`)).json()) as Status;
    expect(after.targets.llama?.state).toBe("ready");
    expect(after.targets.llama?.lastColdStartMs).toBeGreaterThan(0);
    const unknown = await fetch(`${app.adminUrl}/keda/targets/nope`);
    expect(unknown.status).toBe(404);
    expect((await errorBody(unknown)).error.type).toBe("no_route");
  });
});
