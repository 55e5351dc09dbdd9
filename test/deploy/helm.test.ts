/**
 * The Helm chart, deploy/helm/coldfront/, rendered and linted by the real helm (the pinned
 * devDependency's, test/deploy/k8s-tools.ts): `helm lint --strict` and `helm template` with the
 * default values and with every ci/*-values.yaml (the chart-testing convention), every rendered
 * object validated by the same Kubernetes and KEDA models as the kustomize output, and the chart
 * compared with the kustomize overlays on what a cluster and KEDA rely on: ports, probes, the
 * shutdown timing, selectors, RBAC, the config, the ScaledObjects and their pause.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { validateConfig } from "../../src/config/load.js";
import { unknownFieldProblems } from "./fields.js";
import { k8sTools, run } from "./k8s-tools.js";
import { type K8sObject, objectId, readObjects, renderKustomization } from "./kustomize.js";
import {
  type Container,
  DEPLOY,
  type Deployment,
  embeddedConfig,
  find,
  ofKind,
  type Rule,
  readText,
  type ScaledObject,
  type Service,
  serviceMonitorProblems,
  validateObject,
} from "./manifests.js";

const CHART = join(DEPLOY, "helm/coldfront");
const { helm } = k8sTools();
const scratch = mkdtempSync(join(tmpdir(), "coldfront-helm-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** `helm template coldfront` into namespace serving (the kustomize overlays' names), parsed. */
function template(args: readonly string[] = []): K8sObject[] {
  const out = run(helm, ["template", "coldfront", CHART, "--namespace", "serving", ...args]);
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(out)) {
    if (doc.errors.length > 0) throw new Error(`helm template output: ${doc.errors[0]?.message}`);
    const v: unknown = doc.toJS();
    if (v !== null && v !== undefined) objects.push(v as K8sObject);
  }
  return objects;
}

/** helm's own refusal (schema or template `fail`), as text; throws if helm accepted. */
function refusal(args: readonly string[]): string {
  try {
    run(helm, ["template", "coldfront", CHART, "--namespace", "serving", ...args]);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`helm template ${args.join(" ")} succeeded`);
}

function valuesFile(name: string, text: string): string {
  const file = join(scratch, name);
  writeFileSync(file, text);
  return file;
}

const ciFiles = readdirSync(join(CHART, "ci"))
  .filter((f) => f.endsWith("-values.yaml"))
  .sort();
const renders: [string, K8sObject[]][] = [
  ["default values", template()],
  ...ciFiles.map((f): [string, K8sObject[]] => [`ci/${f}`, template(["-f", join(CHART, "ci", f)])]),
];
const chart = template();
const deployment = find<Deployment>(chart, "Deployment", "coldfront");
const container = deployment.spec.template.spec.containers[0] as Container;

const PROFILES = { cost: 0, dev: 1, ha: 2 } as const;
const overlay = (name: string) => renderKustomization(join(DEPLOY, "overlays", name));
const cost = overlay("cost");
const baseDeployment = find<Deployment>(cost, "Deployment", "coldfront");
const baseContainer = baseDeployment.spec.template.spec.containers[0] as Container;

describe("the chart, linted and rendered by the real helm", () => {
  it("has a ci/<profile>-values.yaml for every profile and signal", () => {
    expect(ciFiles).toEqual(
      expect.arrayContaining([
        "cost-values.yaml",
        "dev-values.yaml",
        "ha-values.yaml",
        "no-keda-values.yaml",
        "metrics-api-values.yaml",
        "external-push-values.yaml",
      ]),
    );
    expect(run(helm, ["version", "--short"])).toMatch(/^v3\./);
  });

  it("passes helm lint --strict with the default values and with every ci values file", () => {
    for (const args of [[], ...ciFiles.map((f) => ["--values", join(CHART, "ci", f)])]) {
      const out = run(helm, ["lint", "--strict", CHART, ...args]);
      expect(out, args.join(" ")).toContain("1 chart(s) linted, 0 chart(s) failed");
    }
  });

  for (const [name, objects] of renders) {
    it(`${name}: renders objects every one of which validates, with a config coldfront accepts`, async () => {
      expect(objects.length).toBeGreaterThanOrEqual(9);
      const modelled = [];
      for (const o of objects) {
        const by = await validateObject(o, name);
        if (by === "model") modelled.push({ where: name, object: o });
        else expect(serviceMonitorProblems(o)).toEqual([]);
      }
      expect(unknownFieldProblems(modelled)).toEqual([]);
      // Every object lands in the release's namespace (the dashboard's may be told otherwise).
      for (const o of objects) expect(o.metadata.namespace, objectId(o)).toBe("serving");
      const config = validateConfig(embeddedConfig(find(objects, "ConfigMap", "coldfront-config")), name);
      expect(config.targets.length).toBeGreaterThan(0);
      for (const so of ofKind<ScaledObject>(objects, "ScaledObject")) {
        expect(so.metadata.annotations?.["autoscaling.keda.sh/paused"], `${name} ${so.metadata.name}`).toBe(
          "true",
        );
      }
    }, 60_000);
  }
});

describe("the chart against the kustomize overlays", () => {
  const profile = (name: string) => template(["-f", join(CHART, "ci", `${name}-values.yaml`)]);

  it("renders the same objects as overlays/cost by default, and as each overlay with its ci values", () => {
    const ids = (list: readonly K8sObject[]) => list.map(objectId).sort();
    expect(ids(chart)).toEqual(ids(cost));
    for (const name of [...Object.keys(PROFILES), "no-keda"]) {
      expect(ids(profile(name)), name).toEqual(ids(overlay(name)));
    }
  });

  it("runs the same container: args, ports, probes, env, mounts, resources, security", () => {
    expect(container.args).toEqual(baseContainer.args);
    expect(container.ports).toEqual(baseContainer.ports);
    expect(container.readinessProbe).toEqual(baseContainer.readinessProbe);
    expect(container.livenessProbe).toEqual(baseContainer.livenessProbe);
    expect(container.env).toEqual(baseContainer.env);
    expect(container.volumeMounts).toEqual(baseContainer.volumeMounts);
    expect(container.resources).toEqual(baseContainer.resources);
    expect(container.securityContext).toEqual(baseContainer.securityContext);
    expect(container.securityContext?.readOnlyRootFilesystem).toBe(true);
    const pod = deployment.spec.template.spec;
    const basePod = baseDeployment.spec.template.spec;
    expect(pod.securityContext).toEqual(basePod.securityContext);
    expect(pod.volumes).toEqual(basePod.volumes);
    expect(pod.serviceAccountName).toBe(basePod.serviceAccountName);
    expect(container.image).toBe(baseContainer.image);
  });

  it("pauses before SIGTERM and lets shutdown.gracePeriod finish before SIGKILL, as the base does", () => {
    expect(container.lifecycle).toEqual(baseContainer.lifecycle);
    const grace = deployment.spec.template.spec.terminationGracePeriodSeconds;
    expect(grace).toBe(baseDeployment.spec.template.spec.terminationGracePeriodSeconds);
    // Derived from the config: 5 s preStop + gracePeriod + 10 s.
    const longer = find<Deployment>(
      template(["--set", "config.shutdown.gracePeriod=1.5m", "--set", "shutdown.preStopSeconds=8"]),
      "Deployment",
      "coldfront",
    ).spec.template.spec;
    expect(longer.terminationGracePeriodSeconds).toBe(8 + 90 + 10);
    expect(longer.containers[0]?.lifecycle?.preStop?.exec?.command).toEqual(["sleep", "8"]);
    expect(refusal(["--set", "config.shutdown.gracePeriod=soon"])).toMatch(/shutdown.gracePeriod/);
  });

  it("selects its pods with the base's labels (and the release's), in every Service, the PDB and the ServiceMonitor", () => {
    const selector = deployment.spec.selector.matchLabels;
    expect(selector).toMatchObject(baseDeployment.spec.selector.matchLabels);
    expect(selector["app.kubernetes.io/instance"]).toBe("coldfront");
    expect(deployment.spec.template.metadata.labels).toMatchObject(selector);
    for (const s of ofKind<Service>(chart, "Service"))
      expect(s.spec.selector, s.metadata.name).toEqual(selector);
    const pdb = find<{ spec: { maxUnavailable: number; selector: { matchLabels: object } } }>(
      chart,
      "PodDisruptionBudget",
      "coldfront",
    );
    expect(pdb.spec.selector.matchLabels).toEqual(selector);
    expect(pdb.spec.maxUnavailable).toBe(1);
    // The ServiceMonitor picks the client Service alone, in both.
    for (const objects of [chart, cost]) {
      const sm = find<{ spec: { selector: { matchLabels: Record<string, string> }; endpoints: object[] } }>(
        objects,
        "ServiceMonitor",
        "coldfront",
      );
      const picked = ofKind<Service>(objects, "Service").filter((s) =>
        Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v),
      );
      expect(picked.map((s) => s.metadata.name)).toEqual(["coldfront"]);
    }
    expect(find<{ spec: object }>(chart, "ServiceMonitor", "coldfront").spec).toMatchObject({
      endpoints: find<{ spec: { endpoints: object[] } }>(cost, "ServiceMonitor", "coldfront").spec.endpoints,
    });
  });

  it("has the base's Services, ports for ports", () => {
    for (const name of ["coldfront", "coldfront-peers"]) {
      const mine = find<Service>(chart, "Service", name).spec;
      const theirs = find<Service>(cost, "Service", name).spec;
      expect(mine.ports, name).toEqual(theirs.ports);
      expect(mine.clusterIP, name).toBe(theirs.clusterIP);
      expect(mine.publishNotReadyAddresses, name).toBe(theirs.publishNotReadyAddresses);
    }
  });

  it("grants the same RBAC verbs, and the scale Role exactly where the no-keda overlay does", () => {
    const rules = (objects: readonly K8sObject[], name: string) =>
      find<{ rules: Rule[] }>(objects, "Role", name).rules;
    const binding = (objects: readonly K8sObject[], name: string) =>
      find<{ roleRef: object; subjects: object[] }>(objects, "RoleBinding", name);
    expect(rules(chart, "coldfront")).toEqual(rules(cost, "coldfront"));
    expect(binding(chart, "coldfront").roleRef).toEqual(binding(cost, "coldfront").roleRef);
    expect(binding(chart, "coldfront").subjects).toEqual(binding(cost, "coldfront").subjects);
    expect(ofKind(chart, "Role").map((r) => r.metadata.name)).toEqual(["coldfront"]);
    const noKeda = profile("no-keda");
    const theirs = overlay("no-keda");
    expect(rules(noKeda, "coldfront-scale")).toEqual(rules(theirs, "coldfront-scale"));
    expect(binding(noKeda, "coldfront-scale").subjects).toEqual(binding(theirs, "coldfront-scale").subjects);
  });

  it("embeds the config of each overlay, as coldfront reads it", () => {
    const config = (objects: readonly K8sObject[], where: string) =>
      validateConfig(embeddedConfig(find(objects, "ConfigMap", "coldfront-config")), where);
    expect(config(chart, "chart")).toEqual(config(cost, "cost"));
    const noKeda = config(profile("no-keda"), "chart no-keda");
    const theirs = config(overlay("no-keda"), "no-keda");
    // The overlay's no-keda config keeps older limits; the targets, the wake and the absence of
    // KEDA's parts are what the profile is.
    expect(noKeda.targets).toEqual(theirs.targets);
    expect(noKeda.scaler).toBeUndefined();
    // The namespace follows the release.
    const elsewhere = run(helm, ["template", "coldfront", CHART, "--namespace", "models"]);
    expect(elsewhere).not.toContain("serving");
  });

  for (const [name, floor] of Object.entries(PROFILES)) {
    it(`${name}: the ScaledObject and coldfront's replicas are the overlay's, still paused`, () => {
      const mine = profile(name);
      const theirs = overlay(name);
      const so = find<ScaledObject>(mine, "ScaledObject", "raw-vllm");
      expect(so.spec).toEqual(find<ScaledObject>(theirs, "ScaledObject", "raw-vllm").spec);
      expect(so.spec.minReplicaCount).toBe(floor);
      expect(so.metadata.annotations).toEqual({ "autoscaling.keda.sh/paused": "true" });
      expect(find<Deployment>(mine, "Deployment", "coldfront").spec.replicas).toBe(
        find<Deployment>(theirs, "Deployment", "coldfront").spec.replicas,
      );
    });
  }

  for (const signal of ["prometheus", "metrics-api", "external-push"]) {
    it(`keda.signal=${signal}: the ScaledObject of deploy/scaledobjects/${signal}.yaml, paused`, () => {
      const [committed] = readObjects(join(DEPLOY, "scaledobjects", `${signal}.yaml`)) as (K8sObject &
        ScaledObject)[];
      for (const p of Object.keys(PROFILES)) {
        const so = find<ScaledObject>(
          template(["--set", `keda.signal=${signal}`, "--set", `profile=${p}`]),
          "ScaledObject",
          "raw-vllm",
        );
        expect(so.spec, p).toEqual({
          ...committed!.spec,
          minReplicaCount: PROFILES[p as keyof typeof PROFILES],
        });
        expect(so.metadata.annotations).toEqual(committed!.metadata.annotations);
      }
    });
  }
});

describe("the chart's values", () => {
  it("are typed by values.schema.json: helm refuses a wrong type or an unknown key before rendering", () => {
    expect(refusal(["--set", "replicaCount=two"])).toMatch(/replicaCount: Invalid type/);
    expect(refusal(["--set-string", "keda.paused=yes"])).toMatch(/keda.paused: Invalid type/);
    expect(refusal(["--set", "profile=cheap"])).toMatch(/profile must be one of/);
    expect(refusal(["--set", "keda.signal=cpu"])).toMatch(/keda.signal must be one of/);
    expect(refusal(["--set", "replicacount=3"])).toMatch(/Additional property replicacount is not allowed/);
    expect(refusal(["--set", "image.pullPolicy=Sometimes"])).toMatch(/image.pullPolicy/);
  });

  it("refuses a ScaledObject for a target the config does not have, and external-push without config.scaler", () => {
    const bad = valuesFile(
      "bad-target.yaml",
      "keda:\n  scaledObjects:\n    - {name: m, target: nope, maxReplicaCount: 1, cooldownPeriod: 60, targetPendingRequests: 5}\n",
    );
    expect(refusal(["-f", bad])).toMatch(/"nope" is not a target of config.targets \(llama, sim\)/);
    expect(refusal(["--set", "keda.signal=external-push", "--set", "config.scaler=null"])).toMatch(
      /external-push: needs config.scaler/,
    );
  });

  it("un-pauses only when told: keda.paused=false", () => {
    const so = find<ScaledObject>(template(["--set", "keda.paused=false"]), "ScaledObject", "raw-vllm");
    expect(so.metadata.annotations?.["autoscaling.keda.sh/paused"]).toBeUndefined();
  });

  it("image, replicaCount, scheduling, pod annotations, extraArgs and extraEnv land where users expect", () => {
    const objects = template([
      "-f",
      join(CHART, "ci/auth-values.yaml"),
      "--set",
      "image.repository=reg.example/cf",
      "--set",
      "image.tag=9.9.9",
      "--set",
      "image.pullPolicy=Always",
      "--set",
      "replicaCount=4",
    ]);
    const d = find<Deployment>(objects, "Deployment", "coldfront");
    const pod = d.spec.template.spec as Deployment["spec"]["template"]["spec"] & Record<string, unknown>;
    const c = pod.containers[0] as Container & { imagePullPolicy: string; env: { name: string }[] };
    expect(d.spec.replicas).toBe(4);
    expect(c.image).toBe("reg.example/cf:9.9.9");
    expect(c.imagePullPolicy).toBe("Always");
    expect(c.args).toEqual(["proxy", "--config", "/etc/coldfront/config.yaml", "--log-level", "debug"]);
    expect(c.env.map((e) => e.name)).toEqual(["POD_IP", "POD_IPS", "OTEL_SERVICE_NAME"]);
    expect(pod.nodeSelector).toEqual({ "kubernetes.io/os": "linux" });
    expect(pod.tolerations).toEqual([
      { key: "dedicated", operator: "Equal", value: "proxy", effect: "NoSchedule" },
    ]);
    expect(pod.affinity).toHaveProperty("nodeAffinity");
    const annotations = (d.spec.template.metadata as { annotations?: Record<string, string> }).annotations;
    expect(annotations?.["example.com/team"]).toBe("platform");
    expect(annotations?.["checksum/config"]).toMatch(/^[0-9a-f]{64}$/);
    expect(find(objects, "ServiceMonitor", "coldfront").metadata.labels?.release).toBe(
      "kube-prometheus-stack",
    );
  });

  it("auth.existingSecret mounts the Secret and points auth.apiKeys.file at it", () => {
    const objects = template(["--set", "auth.existingSecret=keys", "--set", "auth.secretKey=k.txt"]);
    const config = validateConfig(embeddedConfig(find(objects, "ConfigMap", "coldfront-config")), "auth");
    const pod = find<Deployment>(objects, "Deployment", "coldfront").spec.template.spec;
    const mount = pod.containers[0]?.volumeMounts?.find((m) => m.name === "api-keys");
    const volumes = (pod.volumes ?? []) as { name: string; secret?: { secretName: string } }[];
    const volume = volumes.find((v) => v.name === "api-keys");
    expect(volume?.secret?.secretName).toBe("keys");
    expect(config.auth?.apiKeys?.file).toBe(`${mount?.mountPath}/k.txt`);
    // Without it, no auth and no Secret.
    expect(validateConfig(embeddedConfig(find(chart, "ConfigMap", "coldfront-config"))).auth).toBeUndefined();
  });

  it("serviceMonitor.enabled=false drops the ServiceMonitor; keda.enabled=false the ScaledObjects", () => {
    expect(ofKind(template(["--set", "serviceMonitor.enabled=false"]), "ServiceMonitor")).toEqual([]);
    expect(ofKind(template(["--set", "keda.enabled=false"]), "ScaledObject")).toEqual([]);
  });

  it("grafanaDashboard.enabled adds the dashboard of deploy/grafana/ as a ConfigMap for Grafana's sidecar", () => {
    const original = readText("deploy/grafana/coldfront-dashboard.json");
    expect(readFileSync(join(CHART, "dashboards/coldfront.json"), "utf8")).toBe(original);
    expect(ofKind(chart, "ConfigMap").map((c) => c.metadata.name)).toEqual(["coldfront-config"]);
    const cm = find<{ data: Record<string, string> }>(
      template(["--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=monitoring"]),
      "ConfigMap",
      "coldfront-dashboard",
    );
    expect(cm.metadata.namespace).toBe("monitoring");
    expect(cm.metadata.labels?.grafana_dashboard).toBe("1");
    expect(JSON.parse(cm.data["coldfront-dashboard.json"] ?? "")).toEqual(JSON.parse(original));
  });

  it("has package.json's version as the chart's version and appVersion", () => {
    const { version } = JSON.parse(readText("package.json")) as { version: string };
    const meta = parseYaml(readFileSync(join(CHART, "Chart.yaml"), "utf8")) as Record<string, string>;
    expect(meta.version).toBe(version);
    expect(meta.appVersion).toBe(version);
  });
});
