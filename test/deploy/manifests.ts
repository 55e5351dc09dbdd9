/**
 * The committed manifests under deploy/, and their validation against the Kubernetes and KEDA
 * schemas (the `kubernetes-models` and `@kubernetes-models/keda` model classes).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { type K8sObject, readObjects } from "./kustomize.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const DEPLOY = join(ROOT, "deploy");

/** Every file under deploy/ ending in `ext`, as absolute paths, sorted. */
export function deployFiles(ext: RegExp): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (ext.test(e.name)) out.push(path);
    }
  };
  walk(DEPLOY);
  return out.sort();
}

export interface Manifest {
  /** Relative to the repository, e.g. "deploy/base/deployment.yaml". */
  readonly file: string;
  readonly object: K8sObject;
}

/**
 * Every Kubernetes object in every YAML file under deploy/ (kustomization files excluded, and the
 * Helm chart, whose templates are not YAML until helm renders them: test/deploy/helm.test.ts).
 */
export function committedObjects(): Manifest[] {
  return deployFiles(/\.ya?ml$/)
    .filter((f) => !f.endsWith("/kustomization.yaml") && !relative(DEPLOY, f).startsWith("helm/"))
    .flatMap((f) => readObjects(f).map((object) => ({ file: relative(ROOT, f), object })));
}

/** Model packages by API group; the core and built-in groups are all in `kubernetes-models`. */
const MODEL_PACKAGES: Record<string, string> = {
  "keda.sh": "@kubernetes-models/keda",
  // Not a dependency today; used as soon as it is installed (see STRUCTURAL below).
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

interface ModelClass {
  new (data: object): { validate(): void };
  apiVersion: string;
  kind: string;
}

/** Where the model of apiVersion/kind would be: "kubernetes-models/apps/v1/Deployment". */
export function modelModule(apiVersion: string, kind: string): string {
  const slash = apiVersion.lastIndexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  return `${MODEL_PACKAGES[group] ?? "kubernetes-models"}/${apiVersion}/${kind}`;
}

/** The model class for apiVersion/kind, or the reason there is none. */
async function modelClass(apiVersion: string, kind: string): Promise<ModelClass | string> {
  const spec = modelModule(apiVersion, kind);
  try {
    const mod = (await import(spec)) as Record<string, ModelClass | undefined>;
    const cls = mod[kind];
    if (cls?.apiVersion === apiVersion && cls.kind === kind) return cls;
    return `${spec} exports no model ${kind}`;
  } catch (err) {
    return `no model for ${apiVersion} ${kind} (${(err as Error).message.split("\n")[0]})`;
  }
}

/**
 * Kinds without an installed model package, checked by a hand-written structural validator
 * instead. ServiceMonitor: `@kubernetes-models/prometheus-operator` is not a dependency.
 */
const STRUCTURAL: Record<string, (o: K8sObject) => string[]> = {
  "monitoring.coreos.com/v1/ServiceMonitor": serviceMonitorProblems,
};

/**
 * Validates one object: with its model class when one is installed, else with the structural
 * validator of an allow-listed kind. Throws, naming the object, on an invalid object or a kind
 * that neither knows. Answers which of the two validated it.
 */
export async function validateObject(o: K8sObject, where: string): Promise<"model" | "structural"> {
  const name = `${where}: ${o.kind}/${o.metadata.name}`;
  const cls = await modelClass(o.apiVersion, o.kind);
  if (typeof cls !== "string") {
    try {
      new cls(o).validate();
    } catch (err) {
      throw new Error(`${name}: ${(err as Error).message}`);
    }
    return "model";
  }
  const structural = STRUCTURAL[`${o.apiVersion}/${o.kind}`];
  if (!structural) throw new Error(`${name}: unknown kind: ${cls}`);
  const problems = structural(o);
  if (problems.length > 0) throw new Error(`${name}: ${problems.join("; ")}`);
  return "structural";
}

const PROM_DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;

function durationMs(d: string): number {
  const unit: Record<string, number> = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5, y: 31536e6 };
  let total = 0;
  for (const m of d.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) total += Number(m[1]) * (unit[m[2]!] ?? 0);
  return total;
}

/**
 * The fields of prometheus-operator's ServiceMonitor (monitoring.coreos.com/v1) that deploy/ may
 * use, with their types; an unknown field is a problem too, as the CRD's structural schema would
 * prune it.
 */
export function serviceMonitorProblems(o: K8sObject): string[] {
  const p: string[] = [];
  const only = (v: Record<string, unknown>, keys: string[], at: string) => {
    for (const k of Object.keys(v)) if (!keys.includes(k)) p.push(`${at}.${k}: unknown field`);
  };
  only(o, ["apiVersion", "kind", "metadata", "spec"], "(root)");
  const spec = o.spec as Record<string, unknown> | undefined;
  if (!spec || typeof spec !== "object") return [...p, "spec is required"];
  only(
    spec,
    ["selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels"],
    "spec",
  );
  const selector = spec.selector as { matchLabels?: Record<string, unknown> } | undefined;
  const labels = Object.entries(selector?.matchLabels ?? {});
  if (labels.length === 0)
    p.push("spec.selector.matchLabels: required (an empty selector scrapes every Service)");
  for (const [k, v] of labels)
    if (typeof v !== "string") p.push(`spec.selector.matchLabels.${k}: expected a string`);
  const endpoints = spec.endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0) return [...p, "spec.endpoints: at least one"];
  endpoints.forEach((e: Record<string, unknown>, i) => {
    const at = `spec.endpoints[${i}]`;
    only(
      e,
      [
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "honorLabels",
        "relabelings",
        "metricRelabelings",
      ],
      at,
    );
    if (typeof e.port !== "string" || e.port === "") p.push(`${at}.port: expected a Service port name`);
    if (e.path !== undefined && (typeof e.path !== "string" || !e.path.startsWith("/")))
      p.push(`${at}.path: expected /...`);
    if (e.scheme !== undefined && e.scheme !== "http" && e.scheme !== "https")
      p.push(`${at}.scheme: http or https`);
    for (const k of ["interval", "scrapeTimeout"]) {
      if (e[k] !== undefined && (typeof e[k] !== "string" || !PROM_DURATION.test(e[k]))) {
        p.push(`${at}.${k}: expected a Prometheus duration (5s, 1m)`);
      }
    }
    const valid = (d: unknown): d is string => typeof d === "string" && PROM_DURATION.test(d);
    if (valid(e.interval) && valid(e.scrapeTimeout)) {
      if (durationMs(e.scrapeTimeout) > durationMs(e.interval)) p.push(`${at}.scrapeTimeout: above interval`);
    }
  });
  return p;
}

/** The objects of `list` of one kind. */
export function ofKind<T = K8sObject>(list: readonly K8sObject[], kind: string): (K8sObject & T)[] {
  return list.filter((o) => o.kind === kind) as (K8sObject & T)[];
}

/** One object by kind and name, or a thrown error naming what is missing. */
export function find<T = K8sObject>(list: readonly K8sObject[], kind: string, name: string): K8sObject & T {
  const o = list.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind}/${name} in deploy/`);
  return o as K8sObject & T;
}

// Narrow views of the fields the tests read; the schemas above have checked the rest.
export interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    runAsNonRoot?: boolean;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts?: { name: string; mountPath: string }[];
}
export interface PodSpec {
  serviceAccountName?: string;
  terminationGracePeriodSeconds?: number;
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    seccompProfile?: { type: string };
  };
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string } }[];
}
export interface Deployment {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}
export interface Service {
  spec: {
    clusterIP?: string;
    publishNotReadyAddresses?: boolean;
    selector: Record<string, string>;
    ports: { name: string; port: number; targetPort: string | number }[];
  };
}
export interface Trigger {
  type: string;
  name?: string;
  metadata: Record<string, string>;
}
export interface ScaledObject {
  spec: {
    scaleTargetRef: { name: string; kind?: string };
    minReplicaCount?: number;
    maxReplicaCount?: number;
    cooldownPeriod?: number;
    triggers: Trigger[];
  };
}
export interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** The coldfront config embedded in a ConfigMap, parsed (not yet validated). */
export function embeddedConfig(cm: K8sObject): unknown {
  const text = (cm.data as Record<string, string> | undefined)?.["config.yaml"];
  if (typeof text !== "string") throw new Error(`ConfigMap/${cm.metadata.name} has no config.yaml`);
  return parseYaml(text);
}

/** The PromQL queries of a ScaledObject's prometheus triggers. */
export function promQueries(so: K8sObject & ScaledObject): string[] {
  return so.spec.triggers.filter((t) => t.type === "prometheus").map((t) => t.metadata.query ?? "");
}

export function readText(path: string): string {
  return readFileSync(join(ROOT, path), "utf8");
}
