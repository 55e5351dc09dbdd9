/**
 * The fake API server's scale subresource (test/helpers/fake-kube.ts), through the real
 * @kubernetes/client-node: what src/wake/scale.ts relies on has to behave as the API server's,
 * or the waker's tests prove nothing (issue 12 "Wake without KEDA").
 */
import {
  type ApiException,
  AppsV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
} from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { useCleanups, waitFor } from "../helpers/app.js";
import { FakeKube, fakeDeployment, kubeConfigFor, type ScaleChange } from "../helpers/fake-kube.js";

const cleanup = useCleanups();
const NS = "serving";
const NAME = "raw-vllm";

async function setup(replicas = 0) {
  const fake = await FakeKube.start();
  cleanup(() => fake.close());
  fake.apply(fakeDeployment(NS, NAME, replicas));
  const api = kubeConfigFor(fake).makeApiClient(AppsV1Api);
  const changes: ScaleChange[] = [];
  fake.onScale((c) => changes.push(c));
  return { fake, api, changes };
}

const at = { namespace: NS, name: NAME };
const as = (type: string) => setHeaderOptions("Content-Type", type);

async function rejection(p: Promise<unknown>): Promise<ApiException<string>> {
  try {
    await p;
  } catch (err) {
    return err as ApiException<string>;
  }
  throw new Error("expected the call to fail");
}

describe("the fake's scale subresource", () => {
  it("answers an autoscaling/v1 Scale with the Deployment's resourceVersion, and replicas omitted at 0", async () => {
    const { fake, api } = await setup(0);
    const res = await fetch(`${fake.url}/apis/apps/v1/namespaces/${NS}/deployments/${NAME}/scale`, {
      headers: { authorization: `Bearer ${fake.token}` },
    });
    const raw = (await res.json()) as Record<string, unknown>;
    const dep = await api.readNamespacedDeployment(at);
    expect(raw).toMatchObject({
      kind: "Scale",
      apiVersion: "autoscaling/v1",
      metadata: { name: NAME, namespace: NS, resourceVersion: dep.metadata?.resourceVersion },
      // Go's omitempty on ScaleSpec.replicas: a Scale at 0 says `spec: {}`.
      spec: {},
      status: { replicas: 0, selector: `app=${NAME}` },
    });
    const scale = await api.readNamespacedDeploymentScale(at);
    expect(scale.spec?.replicas).toBeUndefined();
    expect(scale.metadata?.uid).toBe(dep.metadata?.uid);
  });

  it("applies a merge patch to the Deployment itself: a new resourceVersion, seen by a GET and a watch", async () => {
    const { fake, api, changes } = await setup(0);
    const before = await api.readNamespacedDeploymentScale(at);
    const events: { type: string; replicas: number | undefined }[] = [];
    const ac = new AbortController();
    cleanup(() => ac.abort());
    void fetch(
      `${fake.url}/apis/apps/v1/namespaces/${NS}/deployments?watch=true&resourceVersion=${before.metadata?.resourceVersion}`,
      { headers: { authorization: `Bearer ${fake.token}` }, signal: ac.signal },
    )
      .then(async (res) => {
        for await (const chunk of res.body as ReadableStream<Uint8Array>) {
          for (const line of new TextDecoder().decode(chunk).split("\n").filter(Boolean)) {
            const e = JSON.parse(line) as { type: string; object: V1Deployment };
            events.push({ type: e.type, replicas: e.object.spec?.replicas });
          }
        }
      })
      .catch(() => {});
    await waitFor(() => fake.openWatches === 1, "the watch of Deployments");

    const after = await api.patchNamespacedDeploymentScale(
      {
        ...at,
        body: { metadata: { resourceVersion: before.metadata?.resourceVersion }, spec: { replicas: 1 } },
      },
      as(PatchStrategy.MergePatch),
    );
    expect(after.spec?.replicas).toBe(1);
    expect(Number(after.metadata?.resourceVersion)).toBeGreaterThan(Number(before.metadata?.resourceVersion));
    const dep = await api.readNamespacedDeployment(at);
    expect(dep.spec?.replicas).toBe(1);
    expect(dep.metadata?.resourceVersion).toBe(after.metadata?.resourceVersion);
    expect(fake.replicasOf(NS, NAME)).toBe(1);
    await waitFor(() => events.length === 1, "the MODIFIED event");
    expect(events).toEqual([{ type: "MODIFIED", replicas: 1 }]);
    expect(changes).toEqual([
      {
        namespace: NS,
        name: NAME,
        from: 0,
        to: 1,
        by: "patch",
        resourceVersion: after.metadata?.resourceVersion,
      },
    ]);
    const patch = fake.requests.find((r) => r.verb === "patch");
    expect(patch).toMatchObject({ subresource: "scale", contentType: "application/merge-patch+json" });
  });

  it("refuses a stale resourceVersion with 409 Conflict, and writes nothing", async () => {
    const { fake, api, changes } = await setup(0);
    const read = await api.readNamespacedDeploymentScale(at);
    fake.setReplicas(NS, NAME, 3); // an HPA or a person, between the read and the write
    const err = await rejection(
      api.patchNamespacedDeploymentScale(
        {
          ...at,
          body: { metadata: { resourceVersion: read.metadata?.resourceVersion }, spec: { replicas: 1 } },
        },
        as(PatchStrategy.MergePatch),
      ),
    );
    expect(err.code).toBe(409);
    expect(JSON.parse(err.body)).toMatchObject({
      kind: "Status",
      reason: "Conflict",
      code: 409,
      message: expect.stringContaining("the object has been modified"),
      details: { name: NAME, group: "apps", kind: "deployments" },
    });
    expect(fake.replicasOf(NS, NAME)).toBe(3);
    expect(changes.map((c) => c.by)).toEqual(["set"]);
  });

  it("writes nothing for a patch that changes nothing (the resourceVersion stays)", async () => {
    const { api, changes } = await setup(1);
    const before = await api.readNamespacedDeploymentScale(at);
    const after = await api.patchNamespacedDeploymentScale(
      { ...at, body: { spec: { replicas: 1 } } },
      as(PatchStrategy.MergePatch),
    );
    expect(after.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
    expect(changes).toEqual([]);
  });

  it("takes strategic-merge and JSON patches too, and refuses what the API server refuses", async () => {
    const { api, fake } = await setup(0);
    let scale = await api.patchNamespacedDeploymentScale(
      { ...at, body: { spec: { replicas: 2 } } },
      as(PatchStrategy.StrategicMergePatch),
    );
    expect(scale.spec?.replicas).toBe(2);
    scale = await api.patchNamespacedDeploymentScale({
      ...at,
      // client-node's default content type for this call is application/json-patch+json.
      body: [
        { op: "test", path: "/spec/replicas", value: 2 },
        { op: "replace", path: "/spec/replicas", value: 0 },
      ],
    });
    expect(scale.spec?.replicas).toBeUndefined();
    expect(fake.replicasOf(NS, NAME)).toBe(0);
    expect(fake.requests.filter((r) => r.verb === "patch").map((r) => r.contentType)).toEqual([
      "application/strategic-merge-patch+json",
      "application/json-patch+json",
    ]);

    const failed = await rejection(
      api.patchNamespacedDeploymentScale({ ...at, body: [{ op: "test", path: "/spec/replicas", value: 5 }] }),
    );
    expect(failed.code).toBe(422);
    const negative = await rejection(
      api.patchNamespacedDeploymentScale(
        { ...at, body: { spec: { replicas: -1 } } },
        as(PatchStrategy.MergePatch),
      ),
    );
    expect(negative.code).toBe(422);
    expect(JSON.parse(negative.body).reason).toBe("Invalid");
    const renamed = await rejection(
      api.patchNamespacedDeploymentScale(
        { ...at, body: { metadata: { name: "other" } } },
        as(PatchStrategy.MergePatch),
      ),
    );
    expect(renamed.code).toBe(400);
    const apply = await rejection(
      api.patchNamespacedDeploymentScale(
        { ...at, body: { spec: { replicas: 1 } } },
        as(PatchStrategy.ServerSideApply),
      ),
    );
    expect(apply.code).toBe(415);
    const missing = await rejection(api.readNamespacedDeploymentScale({ namespace: NS, name: "nope" }));
    expect(missing.code).toBe(404);
    expect(JSON.parse(missing.body).message).toBe('deployments.apps "nope" not found');
    expect(fake.replicasOf(NS, NAME)).toBe(0);
  });

  it("fails the next N scale calls as told: 403 worded as RBAC does, any code, or a reset connection", async () => {
    const { api, fake } = await setup(0);
    fake.failScale(1, 403);
    const forbidden = await rejection(api.readNamespacedDeploymentScale(at));
    expect(forbidden.code).toBe(403);
    expect(JSON.parse(forbidden.body).message).toContain(
      'cannot get resource "deployments/scale" in API group "apps"',
    );
    fake.failScale(1, 500, "patch");
    // A GET is not a PATCH: it passes.
    await api.readNamespacedDeploymentScale(at);
    const internal = await rejection(
      api.patchNamespacedDeploymentScale(
        { ...at, body: { spec: { replicas: 1 } } },
        as(PatchStrategy.MergePatch),
      ),
    );
    expect(internal.code).toBe(500);
    fake.failScale(1, "reset");
    await expect(api.readNamespacedDeploymentScale(at)).rejects.toThrow();
    expect((await api.readNamespacedDeploymentScale(at)).status?.replicas).toBe(0);
  });

  it("followReplicas: a ready EndpointSlice once scaled up, none once back at 0", async () => {
    const { api, fake } = await setup(0);
    fake.followReplicas({ namespace: NS, deployment: NAME, service: NAME });
    const slices = () =>
      fetch(
        `${fake.url}/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices?labelSelector=kubernetes.io/service-name%3D${NAME}`,
        { headers: { authorization: `Bearer ${fake.token}` } },
      ).then(
        async (r) => (await r.json()) as { items: { endpoints: { conditions: { ready: boolean } }[] }[] },
      );
    await api.patchNamespacedDeploymentScale(
      { ...at, body: { spec: { replicas: 1 } } },
      as(PatchStrategy.MergePatch),
    );
    await waitFor(async () => (await slices()).items.length === 1, "the slice");
    expect((await slices()).items[0]?.endpoints[0]?.conditions.ready).toBe(true);
    expect((await api.readNamespacedDeploymentScale(at)).status?.replicas).toBe(1);
    fake.setReplicas(NS, NAME, 0);
    await waitFor(async () => (await slices()).items.length === 0, "no slice");
  });
});
