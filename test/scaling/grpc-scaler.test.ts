import { describe, expect, it } from "vitest";
import { type GrpcScaler, startGrpcScaler } from "../../src/scaling/grpc-scaler.js";
import { createClusterDemand } from "../../src/scaling/peers.js";
import type { ClusterDemand } from "../../src/scaling/signals.js";
import { testLogger, useCleanups, waitFor } from "../helpers/app.js";
import { FakeHub, grpc, grpcCode, KedaClient, PeerAdmin } from "../helpers/keda-client.js";

const log = testLogger();
const cleanup = useCleanups();
const llama = { target: "llama" };

/** The hub's own counts: what createClusterDemand answers without peers. */
function local(hub: FakeHub): ClusterDemand {
  return createClusterDemand({ hub, interval: 500, staleAfter: 30_000, adminPort: 0, log });
}

async function scaler(
  hub: FakeHub,
  cluster: ClusterDemand = local(hub),
  extra: { keepaliveInterval?: number; checkInterval?: number } = {},
): Promise<{ scaler: GrpcScaler; keda: KedaClient }> {
  const s = await startGrpcScaler({ listen: { host: "127.0.0.1", port: 0 }, hub, cluster, log, ...extra });
  cleanup(() => s.close());
  const keda = await KedaClient.connect(s.address);
  cleanup(() => keda.close());
  return { scaler: s, keda };
}

describe("IsActive", () => {
  it("is false while nothing is held or in flight, true while something is held", async () => {
    const hub = new FakeHub("llama", "qwen");
    const { scaler: s, keda } = await scaler(hub);
    expect(s.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await keda.isActive(llama)).toBe(false);
    hub.t("llama").pending = 2;
    expect(await keda.isActive(llama)).toBe(true);
    // Another target's demand is not this one's.
    expect(await keda.isActive({ target: "qwen" })).toBe(false);
    hub.t("llama").pending = 0;
    expect(await keda.isActive(llama)).toBe(false);
  });

  it("is true with requests in flight and none held (a running generation keeps the model up)", async () => {
    const hub = new FakeHub("llama");
    const { keda } = await scaler(hub);
    hub.t("llama").inFlight = 1;
    expect(await keda.isActive(llama)).toBe(true);
  });

  it("rejects a trigger without a target, or with an unknown one, naming the configured targets", async () => {
    const hub = new FakeHub("llama", "qwen");
    const { keda } = await scaler(hub);
    const missing = await grpcCode(keda.isActive({}));
    expect(missing.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(missing.details).toContain('"target" is required');
    expect(missing.details).toContain("llama, qwen");

    const unknown = await grpcCode(keda.isActive({ target: "mistral" }));
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    expect(unknown.details).toContain("'mistral'");

    expect((await grpcCode(keda.getMetricSpec({ target: "mistral" }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await grpcCode(keda.getMetrics({ target: "mistral" }, "pending-mistral"))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    const stream = keda.streamIsActive({ target: "mistral" });
    const end = (await stream.ended) as grpc.ServiceError;
    expect(end.code).toBe(grpc.status.NOT_FOUND);
    expect(stream.values).toEqual([]);
  });
});

describe("GetMetricSpec and GetMetrics", () => {
  it("names one metric pending-<target> with target size 5 by default, or targetPendingRequests", async () => {
    const hub = new FakeHub("llama");
    const { keda } = await scaler(hub);
    expect(await keda.getMetricSpec(llama)).toEqual([
      { metricName: "pending-llama", targetSize: 5, targetSizeFloat: 5 },
    ]);
    expect(await keda.getMetricSpec({ ...llama, targetPendingRequests: "12" })).toEqual([
      { metricName: "pending-llama", targetSize: 12, targetSizeFloat: 12 },
    ]);
    const half = await keda.getMetricSpec({ ...llama, targetPendingRequests: "2.5" });
    expect(half[0]?.targetSizeFloat).toBe(2.5);
  });

  it.each(["abc", "0", "-3", "1e3", "5 requests"])("rejects targetPendingRequests %j", async (bad) => {
    const hub = new FakeHub("llama");
    const { keda } = await scaler(hub);
    const err = await grpcCode(keda.getMetricSpec({ ...llama, targetPendingRequests: bad }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toContain("targetPendingRequests");
    expect(err.details).toContain(bad);
  });

  it("reports the held count (not in-flight) under the name KEDA asked for", async () => {
    const hub = new FakeHub("llama");
    const { keda } = await scaler(hub);
    hub.t("llama").pending = 7;
    hub.t("llama").inFlight = 3;
    expect(await keda.getMetrics(llama, "pending-llama")).toEqual([
      { metricName: "pending-llama", metricValue: 7, metricValueFloat: 7 },
    ]);
    hub.t("llama").pending = 0;
    const [v] = await keda.getMetrics(llama, "pending-llama");
    expect(v?.metricValue).toBe(0);
  });
});

describe("StreamIsActive", () => {
  it("sends the current state at once, then pushes true as soon as a request is held", async () => {
    const hub = new FakeHub("llama");
    // Keep-alive and checks far off: only the hub's own change can explain a prompt push.
    const { keda } = await scaler(hub, local(hub), { keepaliveInterval: 60_000, checkInterval: 60_000 });
    const stream = keda.streamIsActive(llama);
    cleanup(() => stream.cancel());
    await stream.waitFor((v) => v === false);
    await waitFor(() => hub.listenerCount === 1, "the stream to subscribe to the hub");

    const heldAt = performance.now();
    hub.t("llama").pending = 1;
    const i = await stream.waitFor((v) => v === true, 1, 1000);
    // Generous bound, not a benchmark: the push must not wait for a timer.
    expect(performance.now() - heldAt).toBeLessThan(1000);
    expect(stream.values.slice(0, i + 1)).toEqual([false, true]);

    // No repeat while the value stays true.
    hub.t("llama").pending = 2;
    hub.t("llama").inFlight = 1;
    await new Promise((r) => setTimeout(r, 100));
    expect(stream.values).toEqual([false, true]);
  });

  it("re-sends on the keep-alive tick, which is also when a fall is reported", async () => {
    const hub = new FakeHub("llama");
    hub.t("llama").pending = 1;
    const { keda } = await scaler(hub, local(hub), { keepaliveInterval: 100, checkInterval: 20 });
    const stream = keda.streamIsActive(llama);
    cleanup(() => stream.cancel());
    await stream.waitFor((v) => v === true);
    // A second true without any change: the keep-alive.
    await stream.waitFor((v) => v === true, 1);
    const before = stream.values.length;
    hub.t("llama").pending = 0;
    await stream.waitFor((v) => v === false, before);
  });

  it("pushes a peer's held request on the next check, without waiting for the keep-alive", async () => {
    const hub = new FakeHub("llama");
    let peerPending = 0;
    const cluster: ClusterDemand = {
      totals: (t) => ({ pending: (hub.get(t)?.pending ?? 0) + peerPending, inFlight: 0 }),
      stop: async () => {},
    };
    const { keda } = await scaler(hub, cluster, { keepaliveInterval: 60_000, checkInterval: 50 });
    const stream = keda.streamIsActive(llama);
    cleanup(() => stream.cancel());
    await stream.waitFor((v) => v === false);
    peerPending = 3;
    await stream.waitFor((v) => v === true, 1, 2000);
  });

  it("unsubscribes from the hub when KEDA cancels the stream", async () => {
    const hub = new FakeHub("llama");
    const { keda } = await scaler(hub);
    const stream = keda.streamIsActive(llama);
    await stream.waitFor((v) => v === false);
    expect(hub.listenerCount).toBe(1);
    stream.cancel();
    await waitFor(() => hub.listenerCount === 0, "the stream's hub listener to go");
    // The hub still works and nothing throws into the gate's path.
    hub.t("llama").pending = 1;
  });

  it("close() ends open streams with OK and returns promptly", async () => {
    const hub = new FakeHub("llama");
    const s = await startGrpcScaler({
      listen: { host: "127.0.0.1", port: 0 },
      hub,
      cluster: local(hub),
      log,
    });
    cleanup(() => s.close());
    const keda = await KedaClient.connect(s.address);
    cleanup(() => keda.close());
    const streams = [keda.streamIsActive(llama), keda.streamIsActive(llama)];
    for (const st of streams) await st.waitFor((v) => v === false);

    const started = performance.now();
    await s.close();
    // Generous bound: the forced shutdown fallback is 2 s, a hang would be the test timeout.
    expect(performance.now() - started).toBeLessThan(5000);
    for (const st of streams) expect((await st.ended).code).toBe(grpc.status.OK);
    expect(hub.listenerCount).toBe(0);
    // Closed means closed: a new call cannot reach it.
    expect((await grpcCode(keda.isActive(llama))).code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe("two replicas (static peers)", () => {
  it("either replica reports the sum over both, and wakes on the other's held request", async () => {
    const hubA = new FakeHub("llama");
    const hubB = new FakeHub("llama");
    const adminA = await PeerAdmin.start(hubA);
    const adminB = await PeerAdmin.start(hubB);
    cleanup(() => adminA.close());
    cleanup(() => adminB.close());
    const peerOpts = { interval: 50, staleAfter: 30_000, adminPort: 0, log };
    const clusterA = createClusterDemand({ hub: hubA, staticPeers: [adminB.url], ...peerOpts });
    const clusterB = createClusterDemand({ hub: hubB, staticPeers: [adminA.url], ...peerOpts });
    cleanup(() => clusterA.stop());
    cleanup(() => clusterB.stop());
    const a = await scaler(hubA, clusterA, { keepaliveInterval: 60_000, checkInterval: 50 });
    const b = await scaler(hubB, clusterB);

    const stream = a.keda.streamIsActive(llama);
    cleanup(() => stream.cancel());
    await stream.waitFor((v) => v === false);
    // Held on B only: A's stream wakes the model.
    hubB.t("llama").pending = 3;
    await stream.waitFor((v) => v === true, 1, 3000);
    expect(await a.keda.isActive(llama)).toBe(true);

    hubA.t("llama").pending = 2;
    const sum = async (keda: KedaClient) => (await keda.getMetrics(llama, "pending-llama"))[0]?.metricValue;
    await waitFor(async () => (await sum(a.keda)) === 5 && (await sum(b.keda)) === 5, "both to report 5");

    hubB.t("llama").pending = 0;
    hubB.t("llama").inFlight = 4;
    await waitFor(async () => (await sum(a.keda)) === 2, "A to see B's held count fall");
    expect(await a.keda.isActive(llama)).toBe(true);
  });
});
