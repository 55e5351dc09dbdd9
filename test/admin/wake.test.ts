/**
 * README "Long cold starts": `POST /targets/:name/wake` on the admin port counts as demand for
 * hold.wakeHold without holding a request, and every KEDA signal sees it.
 */
import { describe, expect, test } from "vitest";
import { errorBody, metricValue, startColdTarget, useCleanups, waitFor } from "../helpers/app.js";
import { KedaClient } from "../helpers/keda-client.js";

const defer = useCleanups();

describe("an explicit wake", () => {
  test("is seen by StreamIsActive, /keda/targets/:name, the pending gauge and /status, and expires by itself", async () => {
    const { app, gate } = await startColdTarget(defer, {
      extra: { scaler: { listen: "127.0.0.1:0" }, hold: { wakeHold: "1s" } },
    });
    const keda = await KedaClient.connect(app.scalerAddress as string);
    defer(() => keda.close());
    const stream = keda.streamIsActive({ target: "llama" });
    defer(() => stream.cancel());
    await stream.waitFor((v) => v === false);

    const res = await fetch(`${app.adminUrl}/targets/llama/wake`, { method: "POST" });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { state: string; pending: number; wake: { active: boolean } };
    expect(body).toMatchObject({ state: "waking", pending: 1, wake: { active: true } });

    await stream.waitFor((v) => v === true);
    const k = (await (await fetch(`${app.adminUrl}/keda/targets/llama`)).json()) as { pending: number };
    expect(k.pending).toBe(1);
    expect(await metricValue(app, 'coldfront_pending_requests{target="llama"}')).toBe(1);
    const st = (await (await fetch(`${app.adminUrl}/status`)).json()) as {
      targets: { llama: { held: number; pending: number; wake: { active: boolean; remainingMs: number } } };
    };
    expect(st.targets.llama.held).toBe(0);
    expect(st.targets.llama.wake.active).toBe(true);
    expect(st.targets.llama.wake.remainingMs).toBeLessThanOrEqual(1000);

    await waitFor(() => gate().pending === 0, "the wake to expire", 5000);
    const after = (await (await fetch(`${app.adminUrl}/keda/targets/llama`)).json()) as { pending: number };
    expect(after.pending).toBe(0);
  });

  test("an unknown target is 404 no_route; the client port has no wake route", async () => {
    const { app } = await startColdTarget(defer);
    const res = await fetch(`${app.adminUrl}/targets/nope/wake`, { method: "POST" });
    expect(res.status).toBe(404);
    expect((await errorBody(res)).error.type).toBe("no_route");
    // On the client port the same path is just a request for the target (held, as any POST is),
    // never a wake command.
    const viaClient = fetch(`${app.clientUrl}/targets/llama/wake`, { method: "POST", body: "{}" });
    await waitFor(() => app.hub.get("llama")?.pending === 1, "held as a request");
    const st = app.registry.get("llama")?.status() as { wake: { active: boolean }; held: number };
    expect(st.wake.active).toBe(false);
    expect(st.held).toBe(1);
    await app.close();
    expect((await viaClient).status).toBe(503);
  }, 10_000);
});
