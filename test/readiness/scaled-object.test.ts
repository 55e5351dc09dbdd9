import type { KubernetesObject, V1EndpointSlice } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { InformerTuning } from "../../src/readiness/informer.js";
import { pausedAtZero, ScaledObjectPauseSource } from "../../src/readiness/scaled-object.js";
import type { TargetSignals } from "../../src/scaling/signals.js";
import { errorBody, metricValue, startTestApp, testLogger, useCleanups, waitFor } from "../helpers/app.js";
import { FakeKube, kubeConfigFor } from "../helpers/fake-kube.js";
import { Upstream } from "../helpers/upstream.js";

const cleanup = useCleanups();

const NS = "serving";
const NAME = "raw-vllm";

function scaledObject(annotations: Record<string, string> = {}, name = NAME): KubernetesObject {
  return {
    apiVersion: "keda.sh/v1alpha1",
    kind: "ScaledObject",
    metadata: { name, namespace: NS, annotations },
    // What KEDA reads; the pause source only looks at the annotations.
    ...{ spec: { scaleTargetRef: { name }, minReplicaCount: 0, triggers: [] } },
  };
}

function readySlice(ready: boolean): V1EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    addressType: "IPv4",
    metadata: { name: `${NAME}-a`, namespace: NS, labels: { "kubernetes.io/service-name": NAME } },
    endpoints: [{ addresses: ["10.0.0.1"], conditions: { ready } }],
  };
}

async function fakeKube(): Promise<FakeKube> {
  const fake = await FakeKube.start();
  cleanup(() => fake.close());
  return fake;
}

async function started(fake: FakeKube, tuning: Partial<InformerTuning> = {}) {
  const s = new ScaledObjectPauseSource(
    "llama",
    { namespace: NS, name: NAME },
    kubeConfigFor(fake),
    testLogger(),
    {
      watchdog: 60_000,
      backoffInitial: 50,
      backoffMax: 400,
      ...tuning,
    },
  );
  const changes: boolean[] = [];
  s.onChange((paused) => changes.push(paused));
  cleanup(() => s.stop());
  await s.start();
  await waitFor(() => s.synced, "the first list");
  await waitFor(() => fake.openWatches === 1, "the watch to open");
  return { s, changes };
}

describe("pausedAtZero", () => {
  it("reads KEDA's annotations as KEDA does", () => {
    expect(pausedAtZero(undefined)).toBe(false);
    expect(pausedAtZero({})).toBe(false);
    expect(pausedAtZero({ "autoscaling.keda.sh/paused": "true" })).toBe(true);
    expect(pausedAtZero({ "autoscaling.keda.sh/paused": "True" })).toBe(true);
    // KEDA pauses on a value it cannot parse as a boolean.
    expect(pausedAtZero({ "autoscaling.keda.sh/paused": "yes" })).toBe(true);
    expect(pausedAtZero({ "autoscaling.keda.sh/paused": "false" })).toBe(false);
    expect(pausedAtZero({ "autoscaling.keda.sh/paused": "0" })).toBe(false);
    expect(pausedAtZero({ "autoscaling.keda.sh/paused-replicas": "0" })).toBe(true);
    expect(pausedAtZero({ "autoscaling.keda.sh/paused-replicas": "1" })).toBe(false);
    expect(pausedAtZero({ "autoscaling.keda.sh/paused-replicas": "x" })).toBe(false);
    // paused-replicas wins: paused at one replica is not paused at zero.
    expect(
      pausedAtZero({ "autoscaling.keda.sh/paused": "true", "autoscaling.keda.sh/paused-replicas": "2" }),
    ).toBe(false);
    expect(
      pausedAtZero({ "autoscaling.keda.sh/paused": "false", "autoscaling.keda.sh/paused-replicas": "0" }),
    ).toBe(true);
  });
});

describe("ScaledObjectPauseSource", () => {
  it("follows the pause annotations of its one ScaledObject", async () => {
    const fake = await fakeKube();
    fake.apply(scaledObject());
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }, "another"));
    const { s, changes } = await started(fake);
    expect(s.paused).toBe(false);
    expect(s.status()).toMatchObject({
      namespace: NS,
      name: NAME,
      paused: false,
      found: true,
      watch: "synced",
    });

    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }));
    await waitFor(() => s.paused, "paused");
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused-replicas": "0" }));
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused-replicas": "1" }));
    await waitFor(() => !s.paused, "paused at one replica is not paused at zero");
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused-replicas": "0" }));
    await waitFor(() => s.paused, "paused-replicas 0");
    fake.delete("ScaledObject", NS, NAME);
    await waitFor(() => !s.paused, "a deleted ScaledObject pauses nothing");
    expect(s.status()).toMatchObject({ found: false, paused: false });
    expect(changes).toEqual([true, false, true, false]);

    // Only its own object, by name, on both list and watch.
    for (const r of fake.requests) expect(r.query.get("fieldSelector")).toBe(`metadata.name=${NAME}`);
  });

  it("is synced and not paused when the ScaledObject does not exist", async () => {
    const fake = await fakeKube();
    const { s } = await started(fake);
    expect(s.paused).toBe(false);
    expect(s.status()).toMatchObject({ found: false, paused: false });
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }));
    await waitFor(() => s.paused, "paused once created");
  });

  it("sees the next change after a dropped watch and after a 410 in both forms", async () => {
    const fake = await fakeKube();
    fake.apply(scaledObject());
    const { s, changes } = await started(fake);

    fake.dropWatches();
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }));
    await waitFor(() => s.paused, "the change after the drop");
    expect(s.status().restarts).toBe(1);

    await waitFor(() => fake.openWatches === 1, "a watch");
    fake.expireHistory("status");
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "false" }));
    await waitFor(() => !s.paused, "the change after an HTTP 410");
    expect(fake.gone.status).toBe(1);

    await waitFor(() => fake.openWatches === 1, "a watch");
    fake.expireHistory("event");
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }));
    await waitFor(() => s.paused, "the change after a 410 event");
    expect(fake.gone.event).toBe(1);
    expect(changes).toEqual([true, false, true]);
  });

  it("sees the next change behind a silent watch", async () => {
    const fake = await fakeKube();
    fake.apply(scaledObject());
    const { s, changes } = await started(fake, { watchdog: 300 });
    fake.silenceWatches();
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }));
    await waitFor(() => s.paused, "the change behind a silent watch");
    expect(s.status().lastError).toMatch(/nothing from the API server/);
    expect(changes).toEqual([true]);
  });
});

describe("a paused ScaledObject in coldfront", () => {
  async function coldfront(fake: FakeKube) {
    const up = await new Upstream().start();
    cleanup(() => up.stop());
    const app = await startTestApp(
      {
        targets: [
          {
            name: "llama",
            upstream: up.url,
            readiness: { kubernetes: { namespace: NS, service: NAME } },
            scaledObject: { namespace: NS, name: NAME },
          },
        ],
      },
      { kubeConfig: kubeConfigFor(fake) },
    );
    cleanup(() => app.close());
    await waitFor(async () => (await fetch(`${app.adminUrl}/readyz`)).status === 200, "both watches synced");
    return { app, up, gate: () => app.hub.get("llama") as TargetSignals };
  }

  const post = (url: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "x" }),
    });

  it("answers autoscaler_paused at once while paused with no ready endpoint", async () => {
    const fake = await fakeKube();
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused-replicas": "0" }));
    fake.apply(readySlice(false));
    const { app, up, gate } = await coldfront(fake);
    const res = await post(app.clientUrl);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect((await errorBody(res)).error.type).toBe("autoscaler_paused");
    expect(gate().pending).toBe(0);
    expect(up.seen).toHaveLength(0);
    expect(
      await metricValue(app, 'coldfront_requests_total{target="llama",outcome="autoscaler_paused"}'),
    ).toBe(1);
    const status = (await (await fetch(`${app.adminUrl}/status`)).json()) as {
      targets: Record<string, { state: string; autoscaler: Record<string, unknown> }>;
    };
    expect(status.targets.llama?.state).toBe("paused");
    expect(status.targets.llama?.autoscaler).toMatchObject({ paused: true, found: true, watch: "synced" });
  });

  it("answers a request already held with autoscaler_paused when the pause appears", async () => {
    const fake = await fakeKube();
    fake.apply(scaledObject());
    fake.apply(readySlice(false));
    const { app, gate } = await coldfront(fake);
    const held = post(app.clientUrl);
    await waitFor(() => gate().pending === 1, "the request to be held");
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }));
    const res = await held;
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).not.toBeNull();
    expect((await errorBody(res)).error.type).toBe("autoscaler_paused");
    expect(gate().pending).toBe(0);
  });

  it("forwards normally while paused with a ready endpoint", async () => {
    const fake = await fakeKube();
    fake.apply(scaledObject({ "autoscaling.keda.sh/paused": "true" }));
    fake.apply(readySlice(true));
    const { app, up } = await coldfront(fake);
    const res = await post(app.clientUrl);
    expect(res.status).toBe(200);
    expect(up.seen).toHaveLength(1);
  });
});
