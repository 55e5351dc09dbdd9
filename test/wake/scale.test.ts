/**
 * src/wake/scale.ts against the fake API server's scale subresource (issue 12 "Wake without
 * KEDA"): 0 -> 1 once per cold period, only over an observed 0, never while warm or paused or
 * above 0, errors logged once and retried with backoff while there is demand, and two coldfront
 * replicas racing writing once (the resourceVersion precondition, top of src/wake/scale.ts).
 *
 * "Nothing happens" is asserted through the waker's status (no call in flight, no retry pending:
 * nothing can be sent before the next update()), not by waiting and seeing nothing. A wake is
 * awaited on the waker's phase, not on the fake's replica count: the fake writes before it
 * answers, so the count can be 1 while the waker still waits for the answer.
 */
import { AppsV1Api } from "@kubernetes/client-node";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { type ScaleWakeOptions, ScaleWaker } from "../../src/wake/scale.js";
import { useCleanups, waitFor } from "../helpers/app.js";
import {
  FakeKube,
  type FakeRequest,
  fakeDeployment,
  kubeConfigFor,
  type ScaleChange,
} from "../helpers/fake-kube.js";

const cleanup = useCleanups();
const NS = "serving";
const NAME = "raw-vllm";
const REF = { namespace: NS, kind: "Deployment", name: NAME } as const;

interface LogLine {
  level: number;
  msg: string;
  err?: string;
  [key: string]: unknown;
}
const WARN = 40;

/** A fastify logger whose lines the test reads (JSON, one object per line). */
function capturingLogger() {
  const lines: LogLine[] = [];
  const log = Fastify({
    logger: { level: "debug", stream: { write: (l: string) => void lines.push(JSON.parse(l) as LogLine) } },
  }).log;
  return { log, lines };
}

async function setup(replicas = 0) {
  const fake = await FakeKube.start();
  cleanup(() => fake.close());
  fake.apply(fakeDeployment(NS, NAME, replicas));
  const changes: ScaleChange[] = [];
  fake.onScale((c) => changes.push(c));
  return { fake, changes };
}

function waker(fake: FakeKube, o: Partial<ScaleWakeOptions> = {}) {
  const { log, lines } = capturingLogger();
  const w = new ScaleWaker({
    target: "llama",
    ref: REF,
    kubeConfig: kubeConfigFor(fake),
    log,
    // Short, so that retries happen within a test; the defaults are 500 ms to 30 s.
    backoff: { initial: 20, max: 160 },
    ...o,
  });
  cleanup(() => w.stop());
  return { w, lines, status: () => w.status() };
}

const scaleCalls = (fake: FakeKube): FakeRequest[] => fake.requests.filter((r) => r.subresource === "scale");
const verbs = (fake: FakeKube) => scaleCalls(fake).map((r) => r.verb);

/** Nothing under way: no call in flight and no retry pending. */
function idle(status: Record<string, unknown>): boolean {
  return status.inFlight === false && status.retryPending === false;
}

describe("ScaleWaker", () => {
  it("scales 0 to 1 on the first update with demand: one read, one merge patch of the scale subresource", async () => {
    const { fake, changes } = await setup(0);
    const { w, status, lines } = waker(fake);
    const rvAtRead = (await kubeConfigFor(fake).makeApiClient(AppsV1Api).readNamespacedDeployment(REF))
      .metadata?.resourceVersion;

    w.update(true, false);
    await waitFor(() => status().phase === "woken", "the wake");
    expect(fake.replicasOf(NS, NAME)).toBe(1);
    expect(changes).toEqual([expect.objectContaining({ from: 0, to: 1, by: "patch" })]);
    expect(verbs(fake)).toEqual(["get", "patch"]);
    const patch = scaleCalls(fake)[1] as FakeRequest;
    expect(patch.contentType).toBe("application/merge-patch+json");
    // The write's precondition is the version read: a Deployment changed since is not written.
    expect(JSON.parse(patch.body ?? "")).toEqual({
      metadata: { resourceVersion: rvAtRead },
      spec: { replicas: 1 },
    });
    expect(patch.query.get("fieldManager")).toBe("coldfront");
    // The scale subresource only: the Deployment itself is never read or written.
    expect(fake.requests.filter((r) => r.subresource === undefined)).toHaveLength(1); // the test's own GET
    // The real client sees the Deployment scaled.
    const dep = await kubeConfigFor(fake).makeApiClient(AppsV1Api).readNamespacedDeployment(REF);
    expect(dep.spec?.replicas).toBe(1);
    expect(status()).toMatchObject({ patches: 1, observedReplicas: 1, lastError: null, failures: 0 });
    expect(lines.filter((l) => l.msg === "scaled from 0 to 1 replica")).toHaveLength(1);

    // Once per cold period: more updates, demand ending and returning, do nothing.
    w.update(true, false);
    w.update(false, false);
    w.update(true, false);
    expect(status().phase).toBe("woken");
    expect(idle(status())).toBe(true);
    expect(verbs(fake)).toEqual(["get", "patch"]);
  });

  it("does nothing while the target is ready, and wakes in the cold period that follows", async () => {
    const { fake } = await setup(0);
    const { w, status } = waker(fake);
    w.update(true, true);
    w.update(false, true);
    w.update(true, true);
    expect(status().phase).toBe("warm");
    expect(idle(status())).toBe(true);
    expect(scaleCalls(fake)).toEqual([]);

    // ready -> cold starts a new cold period; demand in it wakes.
    w.update(false, false);
    expect(status().phase).toBe("cold");
    expect(scaleCalls(fake)).toEqual([]);
    w.update(true, false);
    await waitFor(() => status().phase === "woken", "the wake in the cold period");
    expect(fake.replicasOf(NS, NAME)).toBe(1);
  });

  it("does nothing without demand", async () => {
    const { fake } = await setup(0);
    const { w, status } = waker(fake);
    w.update(false, false);
    w.update(false, false);
    expect(status().phase).toBe("cold");
    expect(idle(status())).toBe(true);
    expect(scaleCalls(fake)).toEqual([]);
  });

  it("does nothing while the ScaledObject is paused, and wakes once the pause is lifted (no update() needed)", async () => {
    const { fake } = await setup(0);
    let paused = true;
    const { w, status, lines } = waker(fake, { paused: () => paused });
    w.update(true, false);
    w.update(true, false);
    expect(status()).toMatchObject({ phase: "cold", heldByPause: true, inFlight: false });
    expect(scaleCalls(fake)).toEqual([]);
    expect(lines.filter((l) => l.msg.includes("paused"))).toHaveLength(1);

    // Demand stays as it is, so the gate calls no update(): the waker looks again by itself.
    paused = false;
    await waitFor(() => status().phase === "woken", "the wake after the pause");
    expect(fake.replicasOf(NS, NAME)).toBe(1);
    expect(status()).toMatchObject({ phase: "woken", heldByPause: false, patches: 1 });
  });

  it("writes nothing when the pause appears between its read and its write", async () => {
    const { fake } = await setup(0);
    let paused = false;
    const { w, status } = waker(fake, { paused: () => paused });
    fake.holdScale();
    w.update(true, false);
    await waitFor(() => fake.heldScale === 1, "the read to reach the API server");
    paused = true;
    fake.releaseScale();
    await waitFor(() => status().inFlight === false, "the read to finish");
    expect(verbs(fake)).toEqual(["get"]);
    expect(fake.replicasOf(NS, NAME)).toBe(0);
    expect(status()).toMatchObject({ phase: "cold", heldByPause: true, observedReplicas: 0 });
  });

  it("writes nothing when replicas are already above 0, and leaves them to their owner", async () => {
    const { fake, changes } = await setup(2);
    const { w, status, lines } = waker(fake);
    w.update(true, false);
    await waitFor(() => status().phase === "woken", "the read");
    expect(verbs(fake)).toEqual(["get"]);
    expect(fake.replicasOf(NS, NAME)).toBe(2);
    expect(changes).toEqual([]);
    expect(status()).toMatchObject({ patches: 0, observedReplicas: 2 });
    expect(lines.some((l) => l.msg.includes("already at 2 replicas"))).toBe(true);
  });

  it("within one cold period, leaves a Deployment its owner scaled back to 0 alone", async () => {
    const { fake } = await setup(0);
    const { w, status } = waker(fake);
    w.update(true, false);
    await waitFor(() => status().phase === "woken", "the wake");
    fake.setReplicas(NS, NAME, 0); // e.g. a ScaledObject scaling in, before the model got ready
    w.update(false, false);
    w.update(true, false);
    expect(idle(status())).toBe(true);
    expect(fake.replicasOf(NS, NAME)).toBe(0);
    expect(verbs(fake)).toEqual(["get", "patch"]);
  });

  it("wakes again in a new cold period after the Deployment went back to 0", async () => {
    const { fake, changes } = await setup(0);
    const { w, status } = waker(fake);
    w.update(true, false);
    await waitFor(() => status().phase === "woken", "the first wake");
    // The model got ready, served, went idle; its owner scaled it in; the target went cold.
    w.update(false, true);
    fake.setReplicas(NS, NAME, 0);
    w.update(false, false);
    expect(status().phase).toBe("cold");
    w.update(true, false);
    await waitFor(() => status().phase === "woken", "the second wake");
    expect(changes.map((c) => [c.from, c.to, c.by])).toEqual([
      [0, 1, "patch"],
      [1, 0, "set"],
      [0, 1, "patch"],
    ]);
    expect(status()).toMatchObject({ patches: 2, coldPeriods: 2 });
  });

  describe("API errors", () => {
    const cases: { what: string; failure: number | "reset"; verb?: "get" | "patch"; err: RegExp }[] = [
      {
        what: "403 Forbidden (RBAC)",
        failure: 403,
        err: /^HTTP 403: .*cannot get resource "deployments\/scale"/,
      },
      { what: "500 on the patch", failure: 500, verb: "patch", err: /^HTTP 500: / },
      { what: "a reset connection", failure: "reset", err: /./ },
    ];
    for (const c of cases) {
      it(`${c.what}: logged once, retried with backoff while there is demand, then recovers`, async () => {
        const { fake, changes } = await setup(0);
        const { w, status, lines } = waker(fake);
        fake.failScale(3, c.failure, c.verb);
        w.update(true, false);
        await waitFor(() => status().phase === "woken", "the wake after the errors");
        expect(fake.replicasOf(NS, NAME)).toBe(1);
        expect(changes).toHaveLength(1);
        const warnings = lines.filter((l) => l.level === WARN);
        // One line per distinct error, not one per retry.
        expect(warnings).toHaveLength(1);
        expect(warnings[0]?.err).toMatch(c.err);
        if (c.failure === 403) expect(warnings[0]?.msg).toContain("deploy/RBAC.md");
        const done = lines.find((l) => l.msg === "scaled from 0 to 1 replica");
        expect(done?.afterFailures).toBe(3);
        expect(status()).toMatchObject({ patches: 1, failures: 0, lastError: null, backoffMs: 0 });
        const expected =
          c.verb === "patch"
            ? ["get", "patch", "get", "patch", "get", "patch", "get", "patch"]
            : ["get", "get", "get", "get", "patch"];
        expect(verbs(fake)).toEqual(expected);
      });
    }

    it("409 Conflict on the patch: read again at once, then back off, then recovers", async () => {
      const { fake } = await setup(0);
      const { w, status, lines } = waker(fake);
      fake.failScale(3, 409, "patch");
      w.update(true, false);
      await waitFor(() => status().phase === "woken", "the wake after the conflicts");
      expect(fake.replicasOf(NS, NAME)).toBe(1);
      // get patch(409) get patch(409) [backoff] get patch(409) get patch(ok)
      expect(verbs(fake)).toEqual(["get", "patch", "get", "patch", "get", "patch", "get", "patch"]);
      expect(status()).toMatchObject({ patches: 1, conflicts: 3 });
      const warnings = lines.filter((l) => l.level === WARN);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.err).toMatch(/^HTTP 409: .*the object has been modified/);
    });

    it("backs off doubling up to its cap, and stops retrying once demand ends", async () => {
      const { fake } = await setup(0);
      const { w, status, lines } = waker(fake);
      fake.failScale(1_000_000, 500);
      w.update(true, false);
      await waitFor(() => (status().failures as number) >= 5, "five failures");
      // 20, 40, 80, 160, 160: capped at max (the timer itself is jittered by ±20%).
      expect(status().backoffMs).toBe(160);
      expect(lines.filter((l) => l.level === WARN)).toHaveLength(1);

      w.update(false, false);
      await waitFor(() => idle(status()), "the retries to stop");
      expect(status().phase).toBe("cold");
      const calls = scaleCalls(fake).length;
      // Demand again: one new attempt at once (the backoff goes on from where it was).
      w.update(true, false);
      await waitFor(() => scaleCalls(fake).length > calls, "a new attempt");
      expect(fake.replicasOf(NS, NAME)).toBe(0);
    });

    it("stops retrying once the target is ready", async () => {
      const { fake } = await setup(0);
      const { w, status } = waker(fake);
      fake.failScale(1_000_000, 500);
      w.update(true, false);
      await waitFor(() => (status().failures as number) >= 1, "a failure");
      w.update(true, true);
      expect(status().phase).toBe("warm");
      await waitFor(() => idle(status()), "nothing under way");
    });
  });

  it("bounds every call by its timeout, and stop() aborts a call in flight", async () => {
    const { fake } = await setup(0);
    const { w, status } = waker(fake, { requestTimeout: 200 });
    fake.holdScale();
    w.update(true, false);
    await waitFor(() => status().lastError !== null, "the read to time out");
    expect(status().lastError).toBe("no answer from the API server within 200 ms");
    fake.releaseScale();
    await waitFor(() => status().phase === "woken", "the wake once the API server answers");

    const second = waker(fake);
    fake.setReplicas(NS, NAME, 0);
    fake.holdScale();
    second.w.update(true, false);
    await waitFor(() => fake.heldScale === 1, "a call in flight");
    // Resolves at once: the call is aborted, not left to its 10 s default timeout.
    await second.w.stop();
    expect(idle(second.status())).toBe(true);
    fake.releaseScale();
    second.w.update(true, false);
    expect(second.status().inFlight).toBe(false);
    expect(fake.replicasOf(NS, NAME)).toBe(0);
  });

  it("two coldfront replicas racing: both read 0, exactly one write lands, the other re-reads and stops", async () => {
    const { fake, changes } = await setup(0);
    const a = waker(fake);
    const b = waker(fake);
    // Both reads answered from the same state, as when two replicas see demand together.
    fake.holdScale();
    a.w.update(true, false);
    b.w.update(true, false);
    await waitFor(() => fake.heldScale === 2, "both reads");
    fake.releaseScale();
    await waitFor(() => a.status().phase === "woken" && b.status().phase === "woken", "both done");

    expect(changes).toEqual([expect.objectContaining({ from: 0, to: 1, by: "patch" })]);
    expect(fake.replicasOf(NS, NAME)).toBe(1);
    const patches = scaleCalls(fake).filter((r) => r.verb === "patch");
    expect(patches).toHaveLength(2);
    // Both wrote over the same version read; only the first could match it.
    expect(new Set(patches.map((p) => p.body)).size).toBe(1);
    expect((a.status().patches as number) + (b.status().patches as number)).toBe(1);
    expect((a.status().conflicts as number) + (b.status().conflicts as number)).toBe(1);
    // The loser logged the conflict as the expected outcome of a race, not as a failure.
    expect([...a.lines, ...b.lines].filter((l) => l.level === WARN)).toEqual([]);
    expect(verbs(fake).filter((v) => v === "get")).toHaveLength(3);
  });
});
