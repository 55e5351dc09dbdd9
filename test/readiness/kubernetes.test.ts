import { createHook } from "node:async_hooks";
import type { V1EndpointSlice } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { InformerTuning } from "../../src/readiness/informer.js";
import { countReadyEndpoints, KubernetesSource } from "../../src/readiness/kubernetes.js";
import type { TargetSignals } from "../../src/scaling/signals.js";
import { errorBody, startTestApp, testLogger, useCleanups, waitFor } from "../helpers/app.js";
import { FakeKube, type FakeKubeOptions, kubeConfigFor } from "../helpers/fake-kube.js";
import { echoHandler, type Handler, Upstream } from "../helpers/upstream.js";

const cleanup = useCleanups();

const NS = "serving";
const SERVICE = "raw-vllm";

interface Ep {
  ip?: string;
  /** undefined: the condition is unset, which the API says means ready. */
  ready?: boolean;
  pod?: string;
}

/** An EndpointSlice of `service` as the EndpointSlice controller writes it. */
function slice(
  name: string,
  endpoints: Ep[],
  o: { service?: string; namespace?: string; addressType?: string } = {},
): V1EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    addressType: o.addressType ?? "IPv4",
    metadata: {
      name,
      namespace: o.namespace ?? NS,
      labels: { "kubernetes.io/service-name": o.service ?? SERVICE },
    },
    ports: [{ name: "http", port: 8000, protocol: "TCP" }],
    endpoints: endpoints.map((e) => ({
      addresses: e.ip === undefined ? [] : [e.ip],
      conditions: e.ready === undefined ? {} : { ready: e.ready },
      ...(e.pod ? { targetRef: { kind: "Pod", namespace: o.namespace ?? NS, name: e.pod } } : {}),
    })),
  };
}

async function fakeKube(options: FakeKubeOptions = {}): Promise<FakeKube> {
  const fake = await FakeKube.start(options);
  cleanup(() => fake.close());
  return fake;
}

/** A source over the fake with fast backoff; `changes` records every onChange, in order. */
function source(fake: FakeKube, tuning: Partial<InformerTuning> = {}) {
  const s = new KubernetesSource(
    "llama",
    { namespace: NS, service: SERVICE },
    kubeConfigFor(fake),
    testLogger(),
    { watchdog: 60_000, backoffInitial: 50, backoffMax: 400, ...tuning },
  );
  const changes: boolean[] = [];
  s.onChange((ready) => changes.push(ready));
  cleanup(() => s.stop());
  return { s, changes };
}

async function started(fake: FakeKube, tuning: Partial<InformerTuning> = {}) {
  const src = source(fake, tuning);
  await src.s.start();
  await waitFor(() => src.s.synced, "the first list");
  await waitFor(() => fake.openWatches === 1, "the watch to open");
  return src;
}

/**
 * Counts the timers created from now on that are still pending and keep the process alive:
 * what a stop() that forgot a timer leaves behind.
 */
function trackTimers() {
  const live = new Map<number, NodeJS.Timeout>();
  const hook = createHook({
    init(id, type, _trigger, resource) {
      if (type === "Timeout") live.set(id, resource as NodeJS.Timeout);
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  cleanup(() => hook.disable());
  // A timer that fired is destroyed a little later; Node marks it `_destroyed` at once.
  return () =>
    [...live.values()].filter((t) => t.hasRef() && !(t as unknown as { _destroyed: boolean })._destroyed)
      .length;
}

describe("KubernetesSource", () => {
  it("lists and watches the Service's slices, and reports only transitions", async () => {
    const fake = await fakeKube();
    const { s, changes } = await started(fake);
    expect(s.kind).toBe("kubernetes");
    expect(s.ready).toBe(false);
    expect(s.status()).toMatchObject({ namespace: NS, service: SERVICE, slices: 0, readyEndpoints: 0 });
    expect(s.status().watch).toBe("synced");

    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: false }]));
    await waitFor(() => s.status().slices === 1, "the slice to be seen");
    expect(s.ready).toBe(false);
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    await waitFor(() => s.ready, "ready");
    // A change that keeps it ready is no transition.
    fake.apply(
      slice("raw-vllm-a", [
        { ip: "10.0.0.1", ready: true },
        { ip: "10.0.0.2", ready: true },
      ]),
    );
    await waitFor(() => s.status().readyEndpoints === 2, "two ready endpoints");
    fake.apply(
      slice("raw-vllm-a", [
        { ip: "10.0.0.1", ready: false },
        { ip: "10.0.0.2", ready: false },
      ]),
    );
    await waitFor(() => !s.ready, "not ready");
    expect(changes).toEqual([true, false]);

    // What it asked: the Service's label on both list and watch, bookmarks and a server timeout.
    const list = fake.requests.find((r) => r.verb === "list");
    const watch = fake.requests.find((r) => r.verb === "watch");
    expect(list?.namespace).toBe(NS);
    expect(list?.query.get("labelSelector")).toBe(`kubernetes.io/service-name=${SERVICE}`);
    expect(watch?.query.get("labelSelector")).toBe(`kubernetes.io/service-name=${SERVICE}`);
    expect(watch?.query.get("allowWatchBookmarks")).toBe("true");
    expect(Number(watch?.query.get("timeoutSeconds"))).toBeGreaterThan(0);
    expect(watch?.query.get("resourceVersion")).not.toBe("");
    expect(fake.lists).toBe(1);
  });

  it("is ready while any of several slices has a ready endpoint", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-v4", [{ ip: "10.0.0.1", ready: false, pod: "p1" }]));
    fake.apply(slice("raw-vllm-v6", [{ ip: "fd00::1", ready: true, pod: "p2" }], { addressType: "IPv6" }));
    // Other Services and other namespaces are none of its business.
    fake.apply(slice("other-a", [{ ip: "10.0.9.9", ready: true }], { service: "other" }));
    fake.apply(slice("raw-vllm-x", [{ ip: "10.0.9.8", ready: true }], { namespace: "elsewhere" }));
    const { s, changes } = await started(fake);
    expect(s.ready).toBe(true);
    expect(s.status()).toMatchObject({ slices: 2, readyEndpoints: 1 });

    fake.apply(slice("raw-vllm-v4", [{ ip: "10.0.0.1", ready: true, pod: "p1" }]));
    await waitFor(() => s.status().readyEndpoints === 2, "both slices ready");
    fake.delete("EndpointSlice", NS, "raw-vllm-v6");
    await waitFor(() => s.status().slices === 1, "the deletion");
    expect(s.ready).toBe(true);
    fake.delete("EndpointSlice", NS, "raw-vllm-v4");
    await waitFor(() => !s.ready, "no slice left");
    // Ready from the first list, then not ready once: the changes in between were no transition.
    expect(changes).toEqual([true, false]);
  });

  it("counts a nil ready condition as ready and an endpoint without address as not", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ready: true }, { ip: "10.0.0.1", ready: false }]));
    const { s } = await started(fake);
    expect(s.ready).toBe(false);
    fake.apply(slice("raw-vllm-a", [{ ready: true }, { ip: "10.0.0.1" }]));
    await waitFor(() => s.ready, "an endpoint whose ready condition is unset");
    expect(s.status().readyEndpoints).toBe(1);
  });

  it("follows flapping readiness with one event per flip", async () => {
    const fake = await fakeKube();
    const { s, changes } = await started(fake);
    for (let i = 0; i < 10; i++) {
      fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: i % 2 === 0 }]));
      // The same state again, as a controller's status-only update would: no event.
      fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: i % 2 === 0 }]));
    }
    await waitFor(() => changes.length === 10, "ten flips");
    expect(changes).toEqual([true, false, true, false, true, false, true, false, true, false]);
    expect(s.ready).toBe(false);
  });

  it("after a watch cut mid-stream, re-lists and still sees the next transition", async () => {
    const fake = await fakeKube();
    const { s, changes } = await started(fake);
    expect(fake.dropWatches()).toBe(1);
    await waitFor(() => s.status().restarts === 1, "a restart");
    await waitFor(() => fake.openWatches === 1 && s.status().watch === "synced", "a new watch");
    expect(fake.lists).toBe(2);
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    await waitFor(() => s.ready, "ready after the drop");
    expect(changes).toEqual([true]);
    expect(s.status().lastError).toEqual(expect.any(String));
  });

  it("keeps the last known readiness while it cannot reach the API server", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    const { s, changes } = await started(fake);
    fake.failLists(1000, 503);
    fake.dropWatches();
    await waitFor(() => (s.status().restarts as number) >= 3, "failed restarts");
    expect(s.status().watch).toBe("restarting");
    expect(s.ready).toBe(true);
    expect(s.synced).toBe(true);
    fake.failLists(0);
    await waitFor(() => s.status().watch === "synced", "back");
    expect(changes).toEqual([true]);
  });

  it("forgets a slice deleted while no watch was open", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    const { s, changes } = await started(fake);
    expect(s.ready).toBe(true);
    fake.dropWatches();
    // Deleted in the gap: no watch sees it, only the fresh list can.
    fake.delete("EndpointSlice", NS, "raw-vllm-a");
    await waitFor(() => !s.ready, "the fresh list to drop the stale slice");
    expect(changes).toEqual([true, false]);
    expect(fake.lists).toBe(2);
  });

  it("after 410 Gone as an HTTP status, re-lists and still sees the next transition", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    const { s, changes } = await started(fake);
    fake.expireHistory("status");
    // Gone while the client comes back with a version the server no longer has.
    fake.delete("EndpointSlice", NS, "raw-vllm-a");
    await waitFor(() => fake.gone.status === 1, "a watch answered 410");
    await waitFor(() => !s.ready, "the re-list to show the deletion");
    expect(fake.lists).toBe(2);
    await waitFor(() => fake.openWatches === 1, "a new watch");
    fake.apply(slice("raw-vllm-b", [{ ip: "10.0.0.2", ready: true }]));
    await waitFor(() => s.ready, "ready after the 410");
    expect(changes).toEqual([true, false, true]);
    // The library handles this 410 itself: a re-list, not a restart.
    expect(s.status().restarts).toBe(0);
  });

  it("after 410 Gone as an ERROR event inside the stream, re-lists and still sees the next transition", async () => {
    const fake = await fakeKube();
    const { s, changes } = await started(fake);
    fake.expireHistory("event");
    expect(fake.gone.event).toBe(1);
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    await waitFor(() => fake.lists === 2, "a re-list");
    await waitFor(() => s.ready, "ready after the 410 event");
    expect(changes).toEqual([true]);
    expect(fake.gone.status).toBe(0);
  });

  it("resumes a watch the server ended at its timeout, from where it was, without re-listing", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: false }]));
    const { s, changes } = await started(fake);
    const rv = fake.resourceVersion;
    expect(fake.endWatches()).toBe(1);
    await waitFor(() => fake.watches === 2 && fake.openWatches === 1, "the watch to resume");
    expect(fake.requests.filter((r) => r.verb === "watch")[1]?.query.get("resourceVersion")).toBe(rv);
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    await waitFor(() => s.ready, "ready after the watch ended");
    expect(changes).toEqual([true]);
    expect(fake.lists).toBe(1);
    expect(s.status().restarts).toBe(0);
  });

  it("resumes after the server-side timeout it asked for, from the bookmark sent before it", async () => {
    const fake = await fakeKube();
    const { s, changes } = await started(fake, { watchTimeoutSeconds: 1 });
    await waitFor(() => fake.watches === 2 && fake.openWatches === 1, "the watch to time out and resume");
    expect(fake.bookmarksSent).toBeGreaterThanOrEqual(1);
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    await waitFor(() => s.ready, "ready on the resumed watch");
    expect(changes).toEqual([true]);
    expect(fake.lists).toBe(1);
    expect(s.status().restarts).toBe(0);
  });

  it("detects a watch that stays open but silent, and sees the next transition", async () => {
    const fake = await fakeKube();
    const { s, changes } = await started(fake, { watchdog: 300 });
    expect(fake.silenceWatches()).toBe(1);
    // Applied while the only open watch is silent: only a restart can see it.
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    await waitFor(() => s.ready, "ready through a new list and watch");
    expect(changes).toEqual([true]);
    expect(s.status().restarts).toBeGreaterThanOrEqual(1);
    expect(s.status().lastError).toMatch(/nothing from the API server/);
    expect(fake.lists).toBeGreaterThanOrEqual(2);
  });

  it("keeps a quiet watch that receives bookmarks", async () => {
    const fake = await fakeKube({ bookmarkInterval: 50 });
    const { s } = await started(fake, { watchdog: 2000 });
    // Longer than the watchdog, with nothing but bookmarks.
    await waitFor(() => fake.bookmarksSent >= 60, "sixty bookmarks", 20_000);
    expect(s.status().restarts).toBe(0);
    expect(fake.lists).toBe(1);
    expect(fake.watches).toBe(1);
  });

  it("retries a failing list with backoff and says why in status", async () => {
    const fake = await fakeKube();
    fake.failLists(3, 403);
    const { s } = source(fake);
    await s.start();
    await waitFor(() => s.synced, "a list that finally works");
    expect(fake.lists).toBe(4);
    expect(s.status()).toMatchObject({ restarts: 3, watch: "synced" });
    expect(s.status().lastError).toMatch(/HTTP 403/);
  });

  it("restarts after a watch answered with an error status", async () => {
    const fake = await fakeKube();
    fake.failWatches(1, 500);
    const { s } = source(fake);
    await s.start();
    await waitFor(() => fake.openWatches === 1, "a watch that works");
    expect(s.status().restarts).toBe(1);
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    await waitFor(() => s.ready, "ready");
  });

  it("abandons a list that hangs, through the watchdog", async () => {
    const fake = await fakeKube();
    fake.holdLists();
    const { s } = source(fake, { watchdog: 300 });
    void s.start();
    await waitFor(() => fake.lists >= 2, "a second list after the first hung");
    expect(s.synced).toBe(false);
    expect(s.status().watch).not.toBe("synced");
    fake.releaseLists();
    await waitFor(() => s.synced, "synced once lists answer");
  });

  it("stops for good: no timer, no watch, not even from a list that answers after stop()", async () => {
    const fake = await fakeKube();
    const timers = trackTimers();

    // Stopped while watching.
    const a = await started(fake);
    await a.s.stop();
    await waitFor(() => fake.openWatches === 0, "the watch to be closed");

    // Stopped while the library waits before reconnecting a watch that ended twice in a row.
    const d = await started(fake);
    const w = fake.watches;
    fake.endWatches();
    await waitFor(() => fake.watches === w + 1 && fake.openWatches === 1, "the first reconnect");
    fake.endWatches();
    // The library now waits a second before reconnecting, on a timer of ours.
    await new Promise((r) => setTimeout(r, 300));
    await d.s.stop();
    // No watch is open on either side: any timer now is one stop() forgot.
    expect(timers()).toBe(0);
    expect(fake.watches).toBe(w + 1);

    // Stopped while backing off after an error, with a restart due long after this test.
    fake.failLists(1000);
    const b = source(fake, { backoffInitial: 30_000, backoffMax: 30_000 });
    await b.s.start();
    await waitFor(() => b.s.status().restarts === 1, "a failed list");
    await b.s.stop();
    fake.failLists(0);
    await waitFor(() => timers() === 0, "the restart timer to be cleared");

    // Stopped while a list is in flight; the list then answers.
    fake.holdLists();
    const c = source(fake);
    void c.s.start();
    const lists = fake.lists;
    await waitFor(() => fake.lists > lists, "the held list");
    await c.s.stop();
    const watches = fake.watches;
    fake.releaseLists();
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.watches).toBe(watches);
    expect(fake.openWatches).toBe(0);
    expect(c.s.synced).toBe(false);

    const lists2 = fake.lists;
    await new Promise((r) => setTimeout(r, 600));
    expect(fake.lists).toBe(lists2);
    await waitFor(() => timers() === 0, "no timer left behind");
  });
});

describe("countReadyEndpoints", () => {
  it("counts a Pod in two slices once, and endpoints without a Pod by address", () => {
    expect(
      countReadyEndpoints([
        slice("a", [
          { ip: "10.0.0.1", ready: true, pod: "p1" },
          { ip: "10.0.0.2", pod: "p2" },
          { ip: "10.0.0.3", ready: false, pod: "p3" },
        ]),
        slice("b", [{ ip: "fd00::1", ready: true, pod: "p1" }], { addressType: "IPv6" }),
        slice("c", [{ ip: "10.0.0.9", ready: true }, { ip: "10.0.0.9", ready: true }, { ready: true }]),
      ]),
    ).toBe(3);
    expect(countReadyEndpoints([])).toBe(0);
  });
});

describe("a kubernetes target in coldfront", () => {
  async function coldfront(fake: FakeKube, up: Upstream, extra: Record<string, unknown> = {}) {
    const a = await startTestApp(
      {
        targets: [
          {
            name: "llama",
            upstream: up.url,
            readiness: { kubernetes: { namespace: NS, service: SERVICE } },
            ...extra,
          },
        ],
      },
      { kubeConfig: kubeConfigFor(fake) },
    );
    cleanup(() => a.close());
    return { app: a, gate: () => a.hub.get("llama") as TargetSignals };
  }

  async function upstream(handler?: Handler): Promise<Upstream> {
    const up = await new Upstream(handler).start();
    cleanup(() => up.stop());
    return up;
  }

  it("holds a request until a slice turns ready, then releases it", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: false }]));
    const up = await upstream();
    const { app, gate } = await coldfront(fake, up);
    await waitFor(async () => (await fetch(`${app.adminUrl}/readyz`)).status === 200, "synced");
    const res = fetch(`${app.clientUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "held" }),
    });
    await waitFor(() => gate().pending === 1, "the request to be held");
    expect(up.seen).toHaveLength(0);
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    const answer = await res;
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-coldfront-held-ms")).not.toBeNull();
    expect(((await answer.json()) as { id: string }).id).toBe("held");
    expect(up.seen).toHaveLength(1);
  });

  it("is not ready on /readyz until the informer has synced, and shows endpoints on /status", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }, { ip: "10.0.0.2" }]));
    fake.holdLists();
    const up = await upstream();
    const { app } = await coldfront(fake, up);
    await waitFor(() => fake.lists === 1, "the list to reach the API server");
    const early = await fetch(`${app.adminUrl}/readyz`);
    expect(early.status).toBe(503);
    expect(((await early.json()) as { reasons: string[] }).reasons.join()).toMatch(/llama/);
    fake.releaseLists();
    await waitFor(async () => (await fetch(`${app.adminUrl}/readyz`)).status === 200, "readyz 200");
    const status = (await (await fetch(`${app.adminUrl}/status`)).json()) as {
      targets: Record<string, { state: string; readiness: Record<string, unknown> }>;
    };
    expect(status.targets.llama?.state).toBe("ready");
    expect(status.targets.llama?.readiness).toMatchObject({
      kind: "kubernetes",
      synced: true,
      namespace: NS,
      service: SERVICE,
      slices: 1,
      readyEndpoints: 2,
      watch: "synced",
      restarts: 0,
    });
  });

  it("lets a request in flight finish when the endpoints go away", async () => {
    const fake = await fakeKube();
    fake.apply(slice("raw-vllm-a", [{ ip: "10.0.0.1", ready: true }]));
    // A stream that sends its first chunk, then waits for the test before it finishes.
    let finish = () => {};
    const finished = new Promise<void>((r) => {
      finish = r;
    });
    const up = await upstream((req, res, body) => {
      if (!body.includes('"stream"')) return echoHandler(req, res, body);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"i":0}\n\n');
      void finished.then(() => res.end('data: {"i":1}\n\ndata: [DONE]\n\n'));
    });
    const { app, gate } = await coldfront(fake, up);
    await waitFor(() => gate().ready, "ready");
    const res = await fetch(`${app.clientUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ stream: true }),
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"i":0');
    fake.delete("EndpointSlice", NS, "raw-vllm-a");
    await waitFor(() => !gate().ready, "not ready");
    expect(gate().inFlight).toBe(1);
    finish();
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toContain('"i":1');
    expect(rest).toContain("[DONE]");
    await waitFor(() => gate().inFlight === 0, "the stream to be done");
    // A new request now waits for the Service again.
    const held = fetch(`${app.clientUrl}/v1/chat/completions`, { method: "POST", body: "{}" });
    await waitFor(() => gate().pending === 1, "the next request to be held");
    fake.apply(slice("raw-vllm-b", [{ ip: "10.0.0.2", ready: true }]));
    expect((await held).status).toBe(200);
  });

  it("a target whose list is refused (403) stays cold and says why, without keeping coldfront unready", async () => {
    const fake = await fakeKube();
    fake.failLists(1000, 403);
    const up = await upstream();
    const { app } = await coldfront(fake, up);
    // A refusal is retried slowly (5 s, then up to 30 s), so the test waits for the first only.
    await waitFor(() => fake.lists >= 1, "the first list");
    // README "/readyz": a refusal is an answer; the target stays cold and visible in /status.
    await waitFor(async () => (await fetch(`${app.adminUrl}/readyz`)).status === 200, "ready");
    const res = await fetch(`${app.clientUrl}/v1/models`);
    expect(res.status).toBe(503);
    expect((await errorBody(res)).error.type).toBe("target_cold");
    const status = (await (await fetch(`${app.adminUrl}/status`)).json()) as {
      targets: Record<string, { readiness: { lastError: string; rejected: number } }>;
    };
    expect(status.targets.llama?.readiness.lastError).toMatch(/403/);
    expect(status.targets.llama?.readiness.rejected).toBe(403);
  });
});
