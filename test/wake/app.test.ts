/**
 * README "Waking without KEDA", end to end: a coldfront target with `wake.scale` and kubernetes
 * readiness, against the fake API server playing the Deployment and EndpointSlice controllers.
 */
import { describe, expect, test } from "vitest";
import { startTestApp, useCleanups, waitFor } from "../helpers/app.js";
import { FakeKube, fakeDeployment, kubeConfigFor, type ScaleChange } from "../helpers/fake-kube.js";
import { Upstream } from "../helpers/upstream.js";

const defer = useCleanups();
const NS = "serving";

describe("a target that wakes its Deployment itself", () => {
  test("the first held request scales 0 to 1 once; the held requests are released when the slice is ready; nothing is written while warm", async () => {
    const fake = await FakeKube.start();
    defer(() => fake.close());
    fake.apply(fakeDeployment(NS, "raw-vllm", 0));
    const changes: ScaleChange[] = [];
    fake.onScale((c) => changes.push(c));
    fake.followReplicas({ namespace: NS, deployment: "raw-vllm", service: "raw-vllm", delay: 300 });
    const up = await new Upstream().start();
    defer(() => up.stop());
    const app = await startTestApp(
      {
        targets: [
          {
            name: "llama",
            upstream: up.url,
            readiness: { kubernetes: { namespace: NS, service: "raw-vllm" } },
            wake: { scale: { namespace: NS, kind: "Deployment", name: "raw-vllm" } },
          },
        ],
      },
      { kubeConfig: kubeConfigFor(fake) },
    );
    defer(() => app.close());
    await waitFor(async () => (await fetch(`${app.adminUrl}/readyz`)).status === 200, "synced");
    expect(fake.replicasOf(NS, "raw-vllm")).toBe(0);

    const held = [1, 2, 3].map((i) =>
      fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: JSON.stringify({ i }) }),
    );
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    expect(fake.replicasOf(NS, "raw-vllm")).toBe(1);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ from: 0, to: 1 });

    // Warm: nothing more is read or written.
    const patches = () => fake.requests.filter((r) => r.subresource === "scale" && r.verb === "patch").length;
    const before = patches();
    expect((await fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}" })).status).toBe(200);
    expect(patches()).toBe(before);
    const status = (await (await fetch(`${app.adminUrl}/status`)).json()) as {
      targets: { llama: { scale: { patches: number } } };
    };
    expect(status.targets.llama.scale.patches).toBe(1);
  });
});
