/**
 * Every committed manifest under deploy/ against the Kubernetes and KEDA schemas, and against
 * what coldfront itself expects of its deployment: the config it is given, the ports and paths
 * it serves, the Kubernetes API it reads (RBAC), and every ScaledObject committed paused.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { unknownFieldProblems } from "./fields.js";
import type { K8sObject } from "./kustomize.js";
import {
  type Container,
  committedObjects,
  DEPLOY,
  type Deployment,
  embeddedConfig,
  find,
  type Manifest,
  ofKind,
  promQueries,
  ROOT,
  type Rule,
  type ScaledObject,
  type Service,
  serviceMonitorProblems,
  validateObject,
} from "./manifests.js";

const manifests = committedObjects();
const inFolder = (folder: string): K8sObject[] =>
  manifests.filter((m) => m.file.startsWith(`deploy/${folder}/`)).map((m) => m.object);
const base = inFolder("base");
const sim = inFolder("sim");
const scaledObjects = manifests.filter((m) => m.object.kind === "ScaledObject");

const deployment = find<Deployment>(base, "Deployment", "coldfront");
const pod = deployment.spec.template.spec;
const container = pod.containers.find((c) => c.name === "coldfront") as Container;
const config: Config = validateConfig(
  embeddedConfig(find(base, "ConfigMap", "coldfront-config")),
  "ConfigMap",
);

function containerPort(c: Container, name: string): number {
  const p = c.ports?.find((x) => x.name === name);
  if (!p) throw new Error(`container ${c.name} has no port named ${name}`);
  return p.containerPort;
}

/** The pod's env var set from the downward API field `fieldPath`, if any. */
function downward(c: Container, fieldPath: string): string | undefined {
  return c.env?.find((e) => e.valueFrom?.fieldRef?.fieldPath === fieldPath)?.name;
}

describe("every manifest under deploy/", () => {
  it("parses, and validates against the Kubernetes and KEDA schemas (ServiceMonitor structurally)", async () => {
    const how = new Map<string, Set<string>>();
    for (const { file, object } of manifests) {
      const by = await validateObject(object, file);
      how.set(by, (how.get(by) ?? new Set()).add(`${object.apiVersion} ${object.kind}`));
    }
    expect([...(how.get("model") ?? [])].sort()).toEqual([
      "apps/v1 Deployment",
      "keda.sh/v1alpha1 ScaledObject",
      "policy/v1 PodDisruptionBudget",
      "rbac.authorization.k8s.io/v1 Role",
      "rbac.authorization.k8s.io/v1 RoleBinding",
      "v1 ConfigMap",
      "v1 Service",
      "v1 ServiceAccount",
    ]);
    // @kubernetes-models/prometheus-operator is not installed: the ServiceMonitor is checked by
    // serviceMonitorProblems(). Once it is, it moves to "model" and this line says so.
    expect([...(how.get("structural") ?? [])]).toEqual(["monitoring.coreos.com/v1 ServiceMonitor"]);
  });

  it("has no field its Kubernetes or KEDA type does not declare (a typo would be dropped or refused)", async () => {
    const modelled: Manifest[] = [];
    for (const m of manifests) if ((await validateObject(m.object, m.file)) === "model") modelled.push(m);
    expect(modelled.length).toBeGreaterThan(10);
    expect(unknownFieldProblems(modelled.map((m) => ({ where: m.file, object: m.object })))).toEqual([]);

    // And it finds one: a misspelt probe in a copy of the Deployment, a stray key in a ScaledObject.
    const typo = structuredClone(deployment) as K8sObject & Deployment;
    const c = typo.spec.template.spec.containers[0] as unknown as Record<string, unknown>;
    c.readinesProbe = c.readinessProbe;
    const so = structuredClone(scaledObjects[0]!.object) as K8sObject & { spec: Record<string, unknown> };
    so.spec.cooldownPeriods = 60;
    const problems = unknownFieldProblems([
      { where: "typo", object: typo },
      { where: "so", object: so },
    ]);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^typo: Deployment\/coldfront: .*'readinesProbe' does not exist/);
    expect(problems[1]).toMatch(/^so: ScaledObject\/[\w-]+: .*'cooldownPeriods' does not exist/);
  }, 60_000);

  it("is refused when it is broken, of an unknown kind, or a ServiceMonitor with a typo", async () => {
    const broken = structuredClone(deployment) as K8sObject & Deployment;
    (broken.spec.template.spec.containers[0] as { ports: unknown[] }).ports = [{ containerPort: "8080" }];
    await expect(validateObject(broken, "test")).rejects.toThrow(/containerPort must be integer/);

    const so = structuredClone(scaledObjects[0]!.object) as K8sObject & { spec: Record<string, unknown> };
    delete so.spec.scaleTargetRef;
    await expect(validateObject(so, "test")).rejects.toThrow(/scaleTargetRef/);

    const unknown = { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } };
    await expect(validateObject(unknown, "test")).rejects.toThrow(/unknown kind/);

    const sm = structuredClone(find(base, "ServiceMonitor", "coldfront")) as K8sObject & {
      spec: { endpoints: Record<string, unknown>[] };
    };
    sm.spec.endpoints[0]!.intervall = "5s";
    sm.spec.endpoints[0]!.interval = "5 seconds";
    expect(serviceMonitorProblems(sm)).toEqual([
      "spec.endpoints[0].intervall: unknown field",
      "spec.endpoints[0].interval: expected a Prometheus duration (5s, 1m)",
    ]);
  });

  it("has every ScaledObject paused, at minReplicaCount 0, with a ceiling and a cooldown", () => {
    expect(scaledObjects.map((m) => m.file).sort()).toEqual([
      "deploy/scaledobjects/external-push.yaml",
      "deploy/scaledobjects/metrics-api.yaml",
      "deploy/scaledobjects/prometheus.yaml",
      "deploy/sim/scaledobject.yaml",
    ]);
    for (const { file, object } of scaledObjects) {
      const so = object as K8sObject & ScaledObject;
      expect(so.metadata.annotations?.["autoscaling.keda.sh/paused"], file).toBe("true");
      expect(so.spec.minReplicaCount, file).toBe(0);
      expect(so.spec.maxReplicaCount, file).toBeGreaterThan(0);
      expect(so.spec.cooldownPeriod, file).toBeGreaterThanOrEqual(60);
    }
  });

  it("runs every container non-root, read-only, without privileges, under RuntimeDefault seccomp, with resources", () => {
    const deployments = manifests.filter((m) => m.object.kind === "Deployment");
    expect(deployments.map((m) => m.object.metadata.name).sort()).toEqual(["coldfront", "vllm-sim"]);
    for (const { file, object } of deployments) {
      const spec = (object as K8sObject & Deployment).spec.template.spec;
      expect(spec.securityContext?.runAsNonRoot, file).toBe(true);
      expect(spec.securityContext?.runAsUser, file).toBeGreaterThan(0);
      expect(spec.securityContext?.seccompProfile?.type, file).toBe("RuntimeDefault");
      for (const c of spec.containers) {
        expect(c.securityContext, `${file} ${c.name}`).toMatchObject({
          runAsNonRoot: true,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"] },
        });
        expect(c.securityContext?.capabilities?.add, `${file} ${c.name}`).toBeUndefined();
        for (const kind of ["requests", "limits"] as const) {
          expect(Object.keys(c.resources?.[kind] ?? {}).sort(), `${file} ${c.name} ${kind}`).toEqual([
            "cpu",
            "memory",
          ]);
        }
      }
    }
  });
});

describe("coldfront's Deployment and its config", () => {
  it("embeds a config that coldfront's own schema accepts, with the KEDA scaler and its peers", () => {
    expect(config.scaler?.listen.port).toBeGreaterThan(0);
    expect(config.scaler?.peers).toBeDefined();
    expect(config.targets.map((t) => t.name)).toEqual(["llama", "sim"]);
  });

  it("runs `proxy --config` on the mounted ConfigMap, with the ports the config listens on", () => {
    expect(container.args).toEqual(["proxy", "--config", "/etc/coldfront/config.yaml"]);
    const mount = container.volumeMounts?.find((m) => m.mountPath === "/etc/coldfront");
    const volume = pod.volumes?.find((v) => v.name === mount?.name);
    expect(volume?.configMap?.name).toBe("coldfront-config");

    expect(containerPort(container, "http")).toBe(config.listen.port);
    expect(containerPort(container, "admin")).toBe(config.admin.port);
    expect(containerPort(container, "grpc")).toBe(config.scaler?.listen.port);
    // Bound on every interface, or the kubelet's probes and the Service could not reach it.
    for (const a of [config.listen, config.admin, config.scaler!.listen]) expect(a.host).toBe("0.0.0.0");
  });

  it("probes liveness on /healthz and readiness on /readyz of the admin port", () => {
    expect(container.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "admin" });
    expect(container.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "admin" });
  });

  it("gives the pod its IP (peer discovery leaves itself out by it)", () => {
    expect(downward(container, "status.podIP")).toBe("POD_IP");
    expect(downward(container, "status.podIPs")).toBe("POD_IPS");
  });

  it("waits out endpoint removal before SIGTERM, and lets the graceful shutdown finish before SIGKILL", () => {
    const preStop = container.lifecycle?.preStop?.exec?.command;
    expect(preStop?.[0]).toBe("sleep");
    const preStopSeconds = Number(preStop?.[1]);
    expect(preStopSeconds).toBeGreaterThanOrEqual(3);
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    expect(grace).toBeGreaterThan(preStopSeconds + config.shutdown.gracePeriod / 1000);
  });

  it("runs 2 replicas, one disruption at a time, and never below 2 in a rollout", () => {
    expect(deployment.spec.replicas).toBe(2);
    const pdb = find<{ spec: { maxUnavailable?: number; selector: { matchLabels: object } } }>(
      base,
      "PodDisruptionBudget",
      "coldfront",
    );
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect((deployment.spec as { strategy?: unknown }).strategy).toMatchObject({
      rollingUpdate: { maxUnavailable: 0 },
    });
  });

  it("has a client Service with every port, and a headless peers Service as scaler.peers names it", () => {
    const labels = deployment.spec.template.metadata.labels;
    const svc = find<Service>(base, "Service", "coldfront");
    expect(labels).toMatchObject(svc.spec.selector);
    expect(svc.spec.ports.map((p) => [p.name, p.port, p.targetPort])).toEqual([
      ["http", 8080, "http"],
      ["admin", 9090, "admin"],
      ["grpc", 9091, "grpc"],
    ]);

    const peers = find<Service>(base, "Service", config.scaler?.peers?.service ?? "?");
    expect(peers.metadata.name).toBe("coldfront-peers");
    expect(peers.spec.clusterIP).toBe("None");
    expect(peers.spec.publishNotReadyAddresses).toBe(false);
    expect(labels).toMatchObject(peers.spec.selector);
    // peer-discovery.ts reads the port named "admin" from the EndpointSlices.
    expect(peers.spec.ports).toEqual([expect.objectContaining({ name: "admin", port: config.admin.port })]);
  });

  it("is scraped through the client Service alone (two Services would count every replica twice)", () => {
    const sm = find<{
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] };
    }>(base, "ServiceMonitor", "coldfront");
    const selected = ofKind<Service>(base, "Service").filter((s) =>
      Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v),
    );
    expect(selected.map((s) => s.metadata.name)).toEqual(["coldfront"]);
    expect(sm.spec.endpoints.map((e) => e.port)).toEqual(["admin"]);
  });
});

describe("RBAC", () => {
  it("is exactly read access to EndpointSlices and ScaledObjects in the base, in one namespace", () => {
    const all = manifests.map((m) => m.object);
    expect(ofKind(all, "ClusterRole")).toEqual([]);
    expect(ofKind(all, "ClusterRoleBinding")).toEqual([]);
    const roles = ofKind<{ rules: Rule[] }>(base, "Role");
    expect(roles.map((r) => r.metadata.name)).toEqual(["coldfront"]);
    expect(roles[0]!.rules).toEqual([
      { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["get", "list", "watch"] },
      { apiGroups: ["keda.sh"], resources: ["scaledobjects"], verbs: ["get", "list", "watch"] },
    ]);
  });

  it("has one more Role, outside the base: get and patch on deployments/scale, for the scale wake", () => {
    const all = manifests.map((m) => m.object);
    const others = manifests.filter((m) => m.object.kind === "Role" && !m.file.startsWith("deploy/base/"));
    expect(others.map((m) => [m.file, m.object.metadata.name])).toEqual([
      ["deploy/wake-scale/rbac.yaml", "coldfront-scale"],
    ]);
    expect((others[0]!.object as K8sObject & { rules: Rule[] }).rules).toEqual([
      { apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["get", "patch"] },
    ]);
    const binding = find<{ roleRef: object; subjects: object[] }>(all, "RoleBinding", "coldfront-scale");
    expect(binding.roleRef).toEqual({
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: "coldfront-scale",
    });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: pod.serviceAccountName }]);
  });

  it("binds the Role to the ServiceAccount the Deployment runs as, and to nothing else", () => {
    const binding = find<{ roleRef: object; subjects: object[] }>(base, "RoleBinding", "coldfront");
    expect(binding.roleRef).toEqual({
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: "coldfront",
    });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: pod.serviceAccountName }]);
    find(base, "ServiceAccount", pod.serviceAccountName ?? "?");
  });
});

describe("the ScaledObjects read coldfront where it is deployed", () => {
  const targets = new Set(config.targets.map((t) => t.name));
  const svc = find<Service>(base, "Service", "coldfront");
  const port = (name: string) => svc.spec.ports.find((p) => p.name === name)?.port;
  const ns = config.scaler?.peers?.namespace;

  const triggersOf = (m: Manifest) => (m.object as K8sObject & ScaledObject).spec.triggers;

  it("uses every signal style: prometheus, metrics-api and external-push", () => {
    const types = new Set(scaledObjects.flatMap((m) => triggersOf(m).map((t) => t.type)));
    expect([...types].sort()).toEqual(["external-push", "metrics-api", "prometheus"]);
  });

  it("names configured targets and coldfront's Service by its cluster DNS name and ports", () => {
    for (const m of scaledObjects) {
      for (const t of triggersOf(m)) {
        const md = t.metadata;
        if (t.type === "prometheus") {
          expect(md.query, m.file).toBeTruthy();
          for (const [, name] of md.query!.matchAll(/coldfront_\w+\{target="([^"]+)"\}/g)) {
            expect(targets.has(name!), `${m.file}: target "${name}"`).toBe(true);
          }
          expect(md.activationThreshold, m.file).toBeDefined();
        } else if (t.type === "metrics-api") {
          const url = new URL(md.url ?? "");
          expect(url.host, m.file).toBe(`coldfront.${ns}.svc:${port("admin")}`);
          const target = /^\/keda\/targets\/([^/]+)$/.exec(url.pathname)?.[1];
          expect(targets.has(target ?? ""), `${m.file}: ${url.pathname}`).toBe(true);
          expect(["pending", "inFlight"]).toContain(md.valueLocation);
        } else if (t.type === "external-push") {
          expect(md.scalerAddress, m.file).toBe(`coldfront.${ns}.svc:${port("grpc")}`);
          expect(targets.has(md.target ?? ""), `${m.file}: target ${md.target}`).toBe(true);
          expect(Number(md.targetPendingRequests)).toBeGreaterThan(0);
        } else {
          throw new Error(`${m.file}: unexpected trigger type ${t.type}`);
        }
      }
    }
  });

  it("wake from zero on the held count: an activation at 0 on coldfront_pending_requests, pending or push", () => {
    for (const m of scaledObjects) {
      const held = triggersOf(m).find((t) => t.name === "held");
      expect(held, m.file).toBeDefined();
      if (held?.type === "prometheus") {
        expect(held.metadata.query).toMatch(/^sum\(coldfront_pending_requests\{target="[^"]+"\}\)$/);
        expect(held.metadata.activationThreshold).toBe("0");
      } else if (held?.type === "metrics-api") {
        expect(held.metadata.valueLocation).toBe("pending");
        expect(held.metadata.activationTargetValue).toBe("0");
      }
    }
    const prom = scaledObjects.find((m) => m.file.endsWith("/prometheus.yaml"))!.object as K8sObject &
      ScaledObject;
    const queries = promQueries(prom);
    expect(queries.some((q) => q.startsWith("sum(vllm:num_requests_waiting{"))).toBe(true);
    expect(queries.some((q) => q.startsWith("sum(coldfront_in_flight_requests{"))).toBe(true);
  });

  it("scale the Deployments coldfront watches the pause of, and the simulator's own", () => {
    const bySo = new Map(config.targets.map((t) => [t.scaledObject?.name, t]));
    for (const m of scaledObjects) {
      const so = m.object as K8sObject & ScaledObject;
      // The pause fail-fast (target.scaledObject) watches the object KEDA uses for the target.
      const target = bySo.get(so.metadata.name);
      expect(target, `${m.file}: no target watches ScaledObject ${so.metadata.name}`).toBeDefined();
      expect(so.spec.scaleTargetRef.name).toBe(so.metadata.name);
      expect(target?.readiness?.kubernetes?.service).toBe(so.spec.scaleTargetRef.name);
    }
    const simTarget = config.targets.find((t) => t.name === "sim")!;
    const simService = find<Service>(sim, "Service", simTarget.readiness?.kubernetes?.service ?? "?");
    const simDeployment = find<Deployment>(sim, "Deployment", "vllm-sim");
    expect(simDeployment.spec.template.metadata.labels).toMatchObject(simService.spec.selector);
    expect(simTarget.upstream).toBe(`http://vllm-sim.${ns}.svc:${simService.spec.ports[0]?.port}`);
  });
});

describe("the simulator", () => {
  it("runs `coldfront sim` listening on all interfaces, the port its Service and probes use", () => {
    const c = find<Deployment>(sim, "Deployment", "vllm-sim").spec.template.spec.containers[0]!;
    const args = c.args ?? [];
    const flag = (f: string) => args[args.indexOf(f) + 1];
    expect(args[0]).toBe("sim");
    expect(flag("--host")).toBe("0.0.0.0");
    expect(Number(flag("--port"))).toBe(containerPort(c, "http"));
    expect(flag("--model")).toBe(config.targets.find((t) => t.name === "sim")?.match?.models?.[0]);
    expect(c.readinessProbe?.httpGet).toEqual({ path: "/health", port: "http" });
  });
});

describe("the Grafana dashboard", () => {
  interface Panel {
    title: string;
    datasource: { uid: string };
    targets: { expr: string; datasource: { uid: string } }[];
  }
  const dashboard = JSON.parse(readFileSync(join(DEPLOY, "grafana/coldfront-dashboard.json"), "utf8")) as {
    uid: string;
    title: string;
    panels: Panel[];
    templating: { list: { name: string; type: string; query: unknown }[] };
  };
  // The metrics coldfront defines (src/scaling/metrics.ts), by name.
  const defined = new Set(
    [...readFileSync(join(ROOT, "src/scaling/metrics.ts"), "utf8").matchAll(/name: "(coldfront_\w+)"/g)].map(
      (m) => m[1]!,
    ),
  );

  it("shows every coldfront metric, and no name coldfront does not define", () => {
    expect(defined.size).toBeGreaterThanOrEqual(7);
    const used = new Set(
      dashboard.panels
        .flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/coldfront_\w+/g)].map((m) => m[0])))
        .map((name) => (defined.has(name) ? name : name.replace(/_(bucket|sum|count)$/, ""))),
    );
    expect([...used].sort()).toEqual([...defined].sort());
  });

  it("asks the Prometheus data source chosen in its variable, filtered by namespace and target", () => {
    expect(dashboard.uid).toBe("coldfront");
    expect(dashboard.templating.list.map((v) => [v.name, v.type])).toEqual([
      ["datasource", "datasource"],
      ["namespace", "query"],
      ["target", "query"],
    ]);
    // Grafana's variable syntax, not a template string.
    const variable = ["$", "{datasource}"].join("");
    for (const p of dashboard.panels) {
      expect(p.datasource.uid, p.title).toBe(variable);
      for (const t of p.targets) {
        expect(t.datasource.uid, p.title).toBe(variable);
        // coldfront_held_bytes is process-wide (no target label): namespace only.
        if (t.expr.includes("coldfront_held_bytes"))
          expect(t.expr, p.title).toContain('namespace=~"$namespace"');
        else expect(t.expr, p.title).toContain('namespace=~"$namespace", target=~"$target"');
      }
    }
  });
});
