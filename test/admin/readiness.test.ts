import type { KubernetesObject, V1EndpointSlice } from "@kubernetes/client-node";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { readinessReport } from "../../src/admin/readiness.js";
import type { InformerTuning } from "../../src/readiness/informer.js";
import { KubernetesSource } from "../../src/readiness/kubernetes.js";
import { ScaledObjectPauseSource } from "../../src/readiness/scaled-object.js";
import type { PauseSource, ReadinessSource } from "../../src/readiness/source.js";
import { useCleanups, waitFor } from "../helpers/app.js";
import { FakeKube, kubeConfigFor } from "../helpers/fake-kube.js";

const cleanup = useCleanups();
const NS = "serving";

/** A source that is only its answers: what the rule reads. */
function source(o: { synced: boolean; refused?: string; kind?: string }): ReadinessSource {
  return {
    kind: o.kind ?? "kubernetes",
    ready: false,
    synced: o.synced,
    refused: o.refused,
    start: async () => {},
    stop: async () => {},
    onChange: () => () => {},
    demand: () => {},
    status: () => ({}),
  };
}

function pause(synced: boolean): PauseSource {
  return {
    paused: false,
    synced,
    start: async () => {},
    stop: async () => {},
    onChange: () => () => {},
    status: () => ({}),
  };
}

describe("readinessReport", () => {
  it("is ready once every target's readiness source has synced", () => {
    expect(
      readinessReport({
        shuttingDown: false,
        targets: [
          { name: "a", source: source({ synced: true }), pause: undefined },
          { name: "b", source: source({ synced: true, kind: "probe" }), pause: undefined },
        ],
      }),
    ).toEqual({ ready: true, reasons: [] });
    expect(readinessReport({ shuttingDown: false, targets: [] })).toEqual({ ready: true, reasons: [] });
  });

  it("waits for a source that has not answered, and names the target", () => {
    expect(
      readinessReport({
        shuttingDown: false,
        targets: [
          { name: "a", source: source({ synced: true }), pause: undefined },
          { name: "b", source: source({ synced: false }), pause: undefined },
        ],
      }),
    ).toEqual({ ready: false, reasons: ["target 'b': kubernetes readiness has not answered yet"] });
  });

  it("takes a refusal from the API server for an answer: that target stays cold, the replica is ready", () => {
    const r = readinessReport({
      shuttingDown: false,
      targets: [
        { name: "a", source: source({ synced: false, refused: "HTTP 403: forbidden" }), pause: undefined },
      ],
    });
    expect(r).toEqual({ ready: true, reasons: [] });
  });

  it("never waits for a pause source", () => {
    expect(
      readinessReport({
        shuttingDown: false,
        targets: [{ name: "a", source: source({ synced: true }), pause: pause(false) }],
      }).ready,
    ).toBe(true);
  });

  it("is not ready while shutting down, whatever the sources", () => {
    expect(
      readinessReport({
        shuttingDown: true,
        targets: [{ name: "a", source: source({ synced: false }), pause: undefined }],
      }),
    ).toEqual({
      ready: false,
      reasons: ["shutting down", "target 'a': kubernetes readiness has not answered yet"],
    });
  });
});

/** A logger whose records the test reads. */
function capturingLogger() {
  const records: { level: number; msg: string; err?: string }[] = [];
  const log = Fastify({
    logger: { level: "debug", stream: { write: (line: string) => records.push(JSON.parse(line)) } },
  }).log;
  return { log, records };
}

const WARN = 40;

/** Fast retries, so that a test sees several within seconds; production retries a refusal slowly. */
const tuning: Partial<InformerTuning> = {
  watchdog: 60_000,
  backoffInitial: 20,
  rejectedBackoff: 50,
  backoffMax: 100,
};

function slice(service: string, ready: boolean): V1EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    addressType: "IPv4",
    metadata: { name: `${service}-a`, namespace: NS, labels: { "kubernetes.io/service-name": service } },
    endpoints: [{ addresses: ["10.0.0.1"], conditions: { ready } }],
  };
}

function scaledObject(name: string, annotations: Record<string, string> = {}): KubernetesObject {
  return {
    apiVersion: "keda.sh/v1alpha1",
    kind: "ScaledObject",
    metadata: { name, namespace: NS, annotations },
  };
}

/** A target as app.ts builds it from config: a kubernetes source and a ScaledObject, over `fake`. */
function target(fake: FakeKube, name: string, log = capturingLogger().log) {
  const kc = kubeConfigFor(fake);
  const t = {
    name,
    source: new KubernetesSource(name, { namespace: NS, service: name }, kc, log, tuning),
    pause: new ScaledObjectPauseSource(name, { namespace: NS, name }, kc, log, tuning),
  };
  cleanup(() => Promise.all([t.source.stop(), t.pause.stop()]));
  return t;
}

async function startAll(...targets: ReturnType<typeof target>[]): Promise<void> {
  await Promise.all(targets.flatMap((t) => [t.source.start(), t.pause.start()]));
}

describe("/readyz over a fake API server", () => {
  async function fakeKube(): Promise<FakeKube> {
    const fake = await FakeKube.start();
    cleanup(() => fake.close());
    return fake;
  }

  it("a missing ScaledObject CRD (404) is 'not paused', synced, warned once, and seen once KEDA is installed", async () => {
    const fake = await fakeKube();
    fake.uninstall("ScaledObject");
    fake.apply(slice("llama", false));
    const { log, records } = capturingLogger();
    const llama = target(fake, "llama", log);
    await startAll(llama);
    await waitFor(() => llama.source.synced && llama.pause.synced, "both sources to answer");
    expect(readinessReport({ shuttingDown: false, targets: [llama] })).toEqual({ ready: true, reasons: [] });
    expect(llama.pause.paused).toBe(false);
    expect(llama.pause.status()).toMatchObject({ found: false, rejected: 404 });

    // It keeps asking, and says so once, not once per retry.
    const lists = () => fake.requests.filter((r) => r.resource === "scaledobjects").length;
    await waitFor(() => lists() >= 4, "several retries of the ScaledObject list");
    const warnings = records.filter((r) => r.level >= WARN);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/ScaledObject serving\/llama refused.*CRD.*not paused/);

    // KEDA is installed later, with the ScaledObject paused: seen without a restart.
    fake.install("ScaledObject");
    fake.apply(scaledObject("llama", { "autoscaling.keda.sh/paused": "true" }));
    await waitFor(() => llama.pause.paused, "the pause, once the CRD exists");
    expect(llama.pause.status()).toMatchObject({ found: true, rejected: null, watch: "synced" });
  });

  it("a 403 on one target's ScaledObject or EndpointSlices keeps that target cold and visible, never the replica unready", async () => {
    const fake = await fakeKube();
    fake.apply(slice("nopause", true));
    // No RBAC for the ScaledObjects of one namespace...
    const otherNs = "other";
    fake.forbid("ScaledObject", NS);
    const kc = kubeConfigFor(fake);
    const { log, records } = capturingLogger();
    const nopause = target(fake, "nopause", log);
    // ...and none for the EndpointSlices a third target reads.
    const denied = {
      name: "denied",
      source: new KubernetesSource("denied", { namespace: otherNs, service: "denied" }, kc, log, tuning),
      pause: undefined,
    };
    cleanup(() => denied.source.stop());
    fake.forbid("EndpointSlice", otherNs);
    await startAll(nopause);
    await denied.source.start();

    await waitFor(() => nopause.source.ready, "the warm target's endpoints");
    await waitFor(() => denied.source.refused !== undefined, "the refusal of the EndpointSlice list");
    await waitFor(() => nopause.pause.status().lastError !== null, "the refusal of the ScaledObject list");
    const targets = [nopause, denied];
    expect(readinessReport({ shuttingDown: false, targets })).toEqual({ ready: true, reasons: [] });

    // The refused target is cold, and /status (the sources' status) says why.
    expect(denied.source.ready).toBe(false);
    expect(denied.source.synced).toBe(false);
    expect(denied.source.status()).toMatchObject({ rejected: 403 });
    expect(String(denied.source.status().lastError)).toMatch(/HTTP 403: endpointslices.* is forbidden/);
    // The ScaledObject that cannot be read pauses nothing, and its error shows per target.
    expect(nopause.pause.paused).toBe(false);
    expect(nopause.pause.synced).toBe(false);
    expect(nopause.pause.status()).toMatchObject({ rejected: 403 });
    expect(String(nopause.pause.status().lastError)).toMatch(/HTTP 403: scaledobjects.* is forbidden/);
    // Retried, with one warning per refusal, each pointing at the RBAC rules.
    const lists = () => fake.requests.filter((r) => r.resource === "scaledobjects").length;
    await waitFor(() => lists() >= 4, "retries of the forbidden list");
    const warnings = records.filter((r) => r.level >= WARN && /refused/.test(r.msg));
    expect(warnings).toHaveLength(2);
    for (const w of warnings) expect(w.msg).toMatch(/deploy\/RBAC\.md/);

    // The rule granted: both answer as usual.
    fake.allow("ScaledObject", NS);
    fake.allow("EndpointSlice", otherNs);
    fake.apply({
      ...slice("denied", true),
      metadata: { ...slice("denied", true).metadata, namespace: otherNs },
    });
    await waitFor(
      () => denied.source.ready && denied.source.refused === undefined,
      "the denied target, allowed",
    );
    await waitFor(() => nopause.pause.synced, "the ScaledObject, allowed");
    expect(nopause.pause.status()).toMatchObject({ rejected: null, found: false });
  });

  it("a source that has not answered at all (API server failing with 500) still holds /readyz", async () => {
    const fake = await fakeKube();
    fake.failLists(Number.POSITIVE_INFINITY, 500);
    const llama = target(fake, "llama");
    await startAll(llama);
    await waitFor(() => fake.lists >= 4, "retries");
    const r = readinessReport({ shuttingDown: false, targets: [llama] });
    expect(r.ready).toBe(false);
    expect(r.reasons).toEqual(["target 'llama': kubernetes readiness has not answered yet"]);
    expect(llama.source.refused).toBeUndefined();
  });
});
