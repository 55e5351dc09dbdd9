/**
 * The kustomize overlays rendered (by test/deploy/kustomize.ts, and by the real `kubectl kustomize`
 * of the pinned devDependency, which must agree): valid objects, one namespace that matches the
 * one written inside the config, the replica-floor profiles, and everything still paused; and the
 * no-keda overlay (deploy/README.md "Without KEDA"): the scale wake's config and its Role.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config/load.js";
import { unknownFieldProblems } from "./fields.js";
import { k8sTools } from "./k8s-tools.js";
import { type K8sObject, kubectlKustomize, objectId, renderKustomization } from "./kustomize.js";
import {
  DEPLOY,
  type Deployment,
  deployFiles,
  embeddedConfig,
  find,
  ofKind,
  type Rule,
  type ScaledObject,
  validateObject,
} from "./manifests.js";

const { kubectl } = k8sTools();

/** Objects as comparable text: keys sorted at every level, objects sorted by identity. */
function canonical(objects: readonly K8sObject[]): string[] {
  const sortKeys = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return [...objects]
    .sort((a, b) => objectId(a).localeCompare(objectId(b)))
    .map((o) => JSON.stringify(sortKeys(o)));
}

function images(objects: readonly K8sObject[]): string[] {
  return ofKind<Deployment>(objects, "Deployment").flatMap((d) =>
    d.spec.template.spec.containers.map((c) => c.image),
  );
}

describe("the kustomize subset renderer", () => {
  const dir = mkdtempSync(join(tmpdir(), "coldfront-kustomize-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (path: string, text: string) => {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  write("base/kustomization.yaml", "resources: [objects.yaml]\n");
  write(
    "base/objects.yaml",
    `apiVersion: apps/v1
kind: Deployment
metadata: {name: app, labels: {a: "1"}}
spec:
  replicas: 2
  selector: {matchLabels: {a: "1"}}
  template:
    metadata: {labels: {a: "1"}}
    spec:
      containers:
        - {name: app, image: coldfront, args: [x]}
        - {name: side, image: "other:1.0"}
      initContainers:
        - {name: init, image: "coldfront:0.0.1"}
---
# a comment-only document follows, and is skipped
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: one, annotations: {autoscaling.keda.sh/paused: "true"}}
spec: {minReplicaCount: 0, scaleTargetRef: {name: app}, triggers: [{type: cpu, metadata: {value: "50"}}]}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: two}
spec: {minReplicaCount: 0, scaleTargetRef: {name: app}, triggers: [{type: cpu, metadata: {value: "50"}}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: sa}, {kind: ServiceAccount, name: elsewhere}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
`,
  );
  write(
    "overlay/kustomization.yaml",
    `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: serving
resources: [../base]
images:
  - {name: coldfront, newName: registry.example.com/coldfront, newTag: "0.1.0"}
patches:
  - target: {kind: ScaledObject}
    patch: |-
      apiVersion: keda.sh/v1alpha1
      kind: ScaledObject
      metadata: {name: ignored, annotations: {extra: "yes"}}
      spec: {minReplicaCount: 2}
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: app, labels: {a: null, b: "2"}}
      spec: {replicas: 3}
`,
  );

  it("applies resources, patches (by target and by name), namespace and images", () => {
    const out = renderKustomization(join(dir, "overlay"));
    expect(out.map(objectId)).toEqual([
      "Deployment/serving/app",
      "ScaledObject/serving/one",
      "ScaledObject/serving/two",
      "RoleBinding/serving/rb",
      "ServiceAccount/serving/sa",
    ]);
    const app = find<Deployment>(out, "Deployment", "app");
    expect(app.spec.replicas).toBe(3);
    expect(app.metadata.labels).toEqual({ b: "2" });
    expect(app.spec.template.spec.containers.map((c) => c.image)).toEqual([
      "registry.example.com/coldfront:0.1.0",
      "other:1.0",
    ]);
    expect(
      (app.spec.template.spec as { initContainers?: { image: string }[] }).initContainers?.[0]?.image,
    ).toBe("registry.example.com/coldfront:0.1.0");
    for (const so of ofKind<ScaledObject>(out, "ScaledObject")) {
      expect(so.spec.minReplicaCount).toBe(2);
      expect(so.metadata.annotations?.extra).toBe("yes");
    }
    expect(find(out, "ScaledObject", "one").metadata.annotations?.["autoscaling.keda.sh/paused"]).toBe(
      "true",
    );
    // The subject follows its ServiceAccount into the namespace; one outside the render does not.
    expect(find(out, "RoleBinding", "rb").subjects).toEqual([
      { kind: "ServiceAccount", name: "sa", namespace: "serving" },
      { kind: "ServiceAccount", name: "elsewhere" },
    ]);
  });

  it("renders the fixture as kubectl kustomize does", () => {
    expect(canonical(renderKustomization(join(dir, "overlay")))).toEqual(
      canonical(kubectlKustomize(kubectl, join(dir, "overlay"))),
    );
  });

  it("refuses what it does not implement, rather than ignoring it", () => {
    const refuses = (name: string, kustomization: string, message: RegExp) => {
      write(`${name}/kustomization.yaml`, kustomization);
      expect(() => renderKustomization(join(dir, name))).toThrow(message);
    };
    refuses(
      "labels",
      "resources: [../base]\ncommonLabels: {x: y}\n",
      /"commonLabels" is not in the supported subset/,
    );
    refuses(
      "lists",
      "resources: [../base]\npatches:\n  - patch: |-\n      {kind: Deployment, metadata: {name: app}, spec: {template: {spec: {containers: []}}}}\n",
      /list patches are not supported/,
    );
    refuses(
      "nomatch",
      "resources: [../base]\npatches:\n  - patch: |-\n      {kind: Deployment, metadata: {name: nope}, spec: {replicas: 1}}\n",
      /no Deployment\/nope to patch/,
    );
    refuses("outside", "resources: [../base/objects.yaml]\n", /is not in or below/);
    refuses("twice", "resources: [../base, ../base]\n", /defined twice/);
  });
});

const OVERLAYS = { cost: 0, dev: 1, ha: 2 } as const;
const rendered = Object.fromEntries(
  Object.keys(OVERLAYS).map((name) => [name, renderKustomization(join(DEPLOY, "overlays", name))]),
) as Record<keyof typeof OVERLAYS, K8sObject[]>;
const simRendered = renderKustomization(join(DEPLOY, "sim"));
const noKeda = renderKustomization(join(DEPLOY, "overlays", "no-keda"));

describe("the overlays", () => {
  it("are exactly cost, dev, ha and no-keda", () => {
    const dirs = deployFiles(/^kustomization\.yaml$/)
      .map((f) => f.slice(DEPLOY.length + 1))
      .filter((f) => f.startsWith("overlays/"));
    expect(dirs).toEqual([
      "overlays/cost/kustomization.yaml",
      "overlays/dev/kustomization.yaml",
      "overlays/ha/kustomization.yaml",
      "overlays/no-keda/kustomization.yaml",
    ]);
  });

  for (const [name, floor] of Object.entries(OVERLAYS)) {
    const objects = rendered[name as keyof typeof OVERLAYS];

    it(`${name}: renders coldfront and one ScaledObject into one namespace, every object valid`, async () => {
      expect(objects.map(objectId).sort()).toEqual(
        [
          "ConfigMap/serving/coldfront-config",
          "Deployment/serving/coldfront",
          "PodDisruptionBudget/serving/coldfront",
          "Role/serving/coldfront",
          "RoleBinding/serving/coldfront",
          "ScaledObject/serving/raw-vllm",
          "Service/serving/coldfront",
          "Service/serving/coldfront-peers",
          "ServiceAccount/serving/coldfront",
          "ServiceMonitor/serving/coldfront",
        ].sort(),
      );
      for (const o of objects) await validateObject(o, `overlays/${name}`);
      expect(images(objects)).toEqual(["registry.example.com/platform/coldfront:0.1.0"]);
    });

    it(`${name}: sets the ScaledObject's floor to ${floor}, and leaves it paused`, () => {
      const [so, ...more] = ofKind<ScaledObject>(objects, "ScaledObject");
      expect(more).toEqual([]);
      expect(so?.spec.minReplicaCount).toBe(floor);
      expect(so?.metadata.annotations?.["autoscaling.keda.sh/paused"]).toBe("true");
      expect(so?.spec.maxReplicaCount).toBeGreaterThanOrEqual(floor);
      expect(find<Deployment>(objects, "Deployment", "coldfront").spec.replicas).toBe(name === "ha" ? 3 : 2);
    });

    it(`${name}: is deployed into the namespace its config and ScaledObject addresses name`, () => {
      const ns = find(objects, "Deployment", "coldfront").metadata.namespace;
      const config = validateConfig(embeddedConfig(find(objects, "ConfigMap", "coldfront-config")));
      expect(config.scaler?.peers?.namespace).toBe(ns);
      expect(find<{ subjects: object[] }>(objects, "RoleBinding", "coldfront").subjects).toEqual([
        { kind: "ServiceAccount", name: "coldfront", namespace: ns },
      ]);
      for (const t of config.targets) {
        expect(t.readiness?.kubernetes?.namespace, t.name).toBe(ns);
        expect(t.scaledObject?.namespace, t.name).toBe(ns);
      }
      const so = ofKind<ScaledObject>(objects, "ScaledObject")[0]!;
      expect(so.metadata.namespace).toBe(ns);
      for (const tr of so.spec.triggers) {
        const address = tr.metadata.url ?? tr.metadata.scalerAddress;
        if (address?.includes("coldfront")) expect(address).toContain(`coldfront.${ns}.svc:`);
      }
    });

    it(`${name}: renders as kubectl kustomize does`, () => {
      expect(canonical(objects)).toEqual(
        canonical(kubectlKustomize(kubectl, join(DEPLOY, "overlays", name))),
      );
    });
  }
});

describe("the no-keda overlay", () => {
  const config = validateConfig(embeddedConfig(find(noKeda, "ConfigMap", "coldfront-config")), "no-keda");
  const ns = find(noKeda, "Deployment", "coldfront").metadata.namespace;

  it("renders the base and the scale wake's Role into one namespace, no ScaledObject, every object valid", async () => {
    expect(noKeda.map(objectId).sort()).toEqual(
      [
        "ConfigMap/serving/coldfront-config",
        "Deployment/serving/coldfront",
        "PodDisruptionBudget/serving/coldfront",
        "Role/serving/coldfront",
        "Role/serving/coldfront-scale",
        "RoleBinding/serving/coldfront",
        "RoleBinding/serving/coldfront-scale",
        "Service/serving/coldfront",
        "Service/serving/coldfront-peers",
        "ServiceAccount/serving/coldfront",
        "ServiceMonitor/serving/coldfront",
      ].sort(),
    );
    for (const o of noKeda) await validateObject(o, "overlays/no-keda");
    expect(images(noKeda)).toEqual(["registry.example.com/platform/coldfront:0.1.0"]);
    expect(find<Deployment>(noKeda, "Deployment", "coldfront").spec.replicas).toBe(2);
  });

  it("wakes every target through its Deployment's scale subresource, and watches no ScaledObject", () => {
    expect(config.targets.map((t) => t.name)).toEqual(["llama", "sim"]);
    for (const t of config.targets) {
      // The Deployment behind the Service whose EndpointSlices say ready (deploy/README.md names).
      expect(t.wake?.scale, t.name).toEqual({
        namespace: ns,
        kind: "Deployment",
        name: t.readiness?.kubernetes?.service,
      });
      expect(t.readiness?.kubernetes?.namespace, t.name).toBe(ns);
      // Without KEDA's CRDs this watch would never sync, and /readyz would never pass.
      expect(t.scaledObject, t.name).toBeUndefined();
    }
    // The external-push server is for KEDA alone.
    expect(config.scaler).toBeUndefined();
  });

  it("grants get and patch on deployments/scale alone, to coldfront's ServiceAccount, in a Role of its own", () => {
    const role = find<{ rules: Rule[] }>(noKeda, "Role", "coldfront-scale");
    expect(role.rules).toEqual([
      { apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["get", "patch"] },
    ]);
    const binding = find<{ roleRef: object; subjects: object[] }>(noKeda, "RoleBinding", "coldfront-scale");
    expect(binding.roleRef).toEqual({
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: "coldfront-scale",
    });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "coldfront", namespace: ns }]);
    // The base Role stays read-only, and no other overlay gets the write.
    const baseRole = find<{ rules: Rule[] }>(noKeda, "Role", "coldfront");
    for (const r of baseRole.rules)
      expect(r.verbs.filter((v) => !["get", "list", "watch"].includes(v))).toEqual([]);
    for (const [name, objects] of Object.entries(rendered)) {
      expect(objects.filter((o) => o.metadata.name === "coldfront-scale").map(objectId), name).toEqual([]);
    }
  });

  it("renders as kubectl kustomize does", () => {
    expect(canonical(noKeda)).toEqual(
      canonical(kubectlKustomize(kubectl, join(DEPLOY, "overlays", "no-keda"))),
    );
  });
});

describe("every rendered object", () => {
  it("has no field its Kubernetes or KEDA type does not declare (patches included)", async () => {
    const all = [
      ...Object.entries(rendered),
      ["sim", simRendered] as const,
      ["no-keda", noKeda] as const,
    ].flatMap(([name, objects]) => objects.map((object) => ({ where: name, object })));
    const modelled = [];
    for (const l of all) if ((await validateObject(l.object, l.where)) === "model") modelled.push(l);
    expect(modelled.length).toBeGreaterThan(20);
    expect(unknownFieldProblems(modelled)).toEqual([]);
  }, 60_000);
});

describe("deploy/sim", () => {
  it("renders the simulator, its Service and its paused ScaledObject into the same namespace", async () => {
    expect(simRendered.map(objectId).sort()).toEqual([
      "Deployment/serving/vllm-sim",
      "ScaledObject/serving/vllm-sim",
      "Service/serving/vllm-sim",
    ]);
    for (const o of simRendered) await validateObject(o, "sim");
    expect(images(simRendered)).toEqual(["registry.example.com/platform/coldfront:0.1.0"]);
    const so = find<ScaledObject>(simRendered, "ScaledObject", "vllm-sim");
    expect(so.metadata.annotations?.["autoscaling.keda.sh/paused"]).toBe("true");
    expect(so.spec.triggers[0]?.metadata.scalerAddress).toBe("coldfront.serving.svc:9091");
  });

  it("renders as kubectl kustomize does", () => {
    expect(canonical(simRendered)).toEqual(canonical(kubectlKustomize(kubectl, join(DEPLOY, "sim"))));
  });
});
