/**
 * The Dockerfile, read as text: Docker is not available to the tests (no daemon on CI), so this
 * checks what the image promises and what the manifests rely on: a pinned Node 24 base, a build
 * stage and a production-only runtime stage, the files the runtime loads, the OCI labels, a
 * numeric non-root user that matches the pods' runAsUser, the entrypoint and command the
 * Deployments (kustomize and Helm) spell out, and a build context that holds what the COPY lines
 * need.
 */
import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { k8sTools, run } from "./k8s-tools.js";
import type { K8sObject } from "./kustomize.js";
import { committedObjects, DEPLOY, type Deployment, find, ROOT, readText } from "./manifests.js";

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  steps: Instruction[];
  /** LABEL key/values of the stage, ARGs expanded. */
  labels: Map<string, string>;
}

/**
 * Dockerfile instructions by stage, comments and continuations handled, ARGs expanded as Docker
 * does: global ARGs in FROM, and in a stage those it declares again (`ARG NAME` takes the global
 * default).
 */
function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, " ").split("\n");
  const globals = new Map<string, string>();
  let scope = globals;
  const expand = (t: string) => t.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => scope.get(a ?? b) ?? "");
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [, op = "", rest = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = op.toUpperCase();
    if (upper === "ARG") {
      const [k = "", v] = rest.split("=");
      scope.set(k.trim(), v === undefined ? (globals.get(k.trim()) ?? "") : v.trim());
      if (stages.length === 0) continue;
    }
    if (upper === "FROM") {
      scope = globals;
      const [from = "", as, name] = expand(rest).split(/\s+/);
      stages.push({
        from,
        name: as?.toUpperCase() === "AS" ? name : undefined,
        steps: [],
        labels: new Map(),
      });
      scope = new Map();
      continue;
    }
    const stage = stages.at(-1);
    if (upper === "LABEL" && stage) {
      for (const m of rest.matchAll(/([\w.-]+)="([^"]*)"/g)) stage.labels.set(m[1]!, expand(m[2]!));
    }
    stage?.steps.push({ op: upper, args: rest });
  }
  return stages;
}

/** The chart rendered with its default values: its coldfront Deployment. */
function chartDeployment(): K8sObject & Deployment {
  const out = run(k8sTools().helm, ["template", "coldfront", join(DEPLOY, "helm/coldfront")]);
  const objects = parseAllDocuments(out)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  return find<Deployment>(objects, "Deployment", "coldfront");
}

const stages = parseDockerfile(readText("Dockerfile"));
const [build, runtime] = stages;
const runs = (s: Stage | undefined) => (s?.steps ?? []).filter((i) => i.op === "RUN").map((i) => i.args);
const last = (s: Stage | undefined, op: string) => s?.steps.filter((i) => i.op === op).at(-1)?.args;

const pkg = JSON.parse(readText("package.json")) as {
  version: string;
  license: string;
  devDependencies: Record<string, string>;
};

describe("Dockerfile", () => {
  it("builds in one Node 24 stage and runs in another", () => {
    expect(stages).toHaveLength(2);
    for (const s of stages) expect(s.from).toMatch(/^node:24([.-]|$)/);
    expect(build?.name).toBe("build");
    expect(runs(build).some((r) => /^npm ci\b/.test(r) && !r.includes("--omit"))).toBe(true);
    expect(runs(build).some((r) => r.startsWith("npm run build"))).toBe(true);
  });

  it("pins its base image by digest or by a release tag, the Node release the tests run on", () => {
    for (const s of stages) {
      const [image = "", digest] = s.from.split("@");
      const tag = /:([^/]+)$/.exec(image)?.[1];
      if (digest !== undefined) expect(digest, s.from).toMatch(/^sha256:[0-9a-f]{64}$/);
      else {
        // A full release (not `24`, `lts` or `latest`, which move under a rebuild).
        expect(tag, s.from).toMatch(/^\d+\.\d+\.\d+(-[a-z0-9.-]+)?$/);
        expect(tag?.split("-")[0], s.from).toBe(pkg.devDependencies.node);
      }
    }
  });

  it("labels the image with package.json's version and license, and its source", () => {
    const labels = Object.fromEntries(runtime?.labels ?? []);
    expect(labels["org.opencontainers.image.version"]).toBe(pkg.version);
    expect(labels["org.opencontainers.image.licenses"]).toBe(pkg.license);
    expect(labels["org.opencontainers.image.title"]).toBe("coldfront");
    expect(new URL(labels["org.opencontainers.image.source"] ?? "").protocol).toBe("https:");
  });

  it("installs production dependencies only in the runtime stage, and copies dist/ and proto/", () => {
    const installs = runs(runtime).filter((r) => r.includes("npm "));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/^npm ci .*--omit=dev/);
    expect(runs(runtime).some((r) => r.includes("npm run"))).toBe(false);
    const copies = (runtime?.steps ?? []).filter((i) => i.op === "COPY").map((i) => i.args);
    expect(copies).toContain("--from=build /src/dist ./dist");
    expect(copies).toContain("proto ./proto");
  });

  it("runs as a numeric non-root user, the one the manifests' pods run as", () => {
    const user = last(runtime, "USER") ?? "";
    expect(user).toMatch(/^\d+(:\d+)?$/);
    const uid = Number(user.split(":")[0]);
    expect(uid).toBeGreaterThan(0);
    const deployments = committedObjects().filter((m) => m.object.kind === "Deployment");
    expect(deployments.length).toBeGreaterThan(0);
    for (const { file, object } of deployments) {
      const spec = (object as K8sObject & Deployment).spec.template.spec;
      expect(spec.securityContext?.runAsUser, file).toBe(uid);
    }
    // The chart's defaults too, on a read-only root filesystem.
    const chart = chartDeployment().spec.template.spec;
    expect(chart.securityContext?.runAsUser).toBe(uid);
    expect(chart.securityContext?.runAsNonRoot).toBe(true);
    expect(chart.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
  });

  it("starts `coldfront proxy --config /etc/coldfront/config.yaml`, which the Deployment spells out again", () => {
    expect(JSON.parse(last(runtime, "ENTRYPOINT") ?? "null")).toEqual([
      "node",
      "--max-semi-space-size=4",
      "--heap-growing-percent=50",
      "dist/cli.js",
    ]);
    const cmd = JSON.parse(last(runtime, "CMD") ?? "null");
    expect(cmd).toEqual(["proxy", "--config", "/etc/coldfront/config.yaml"]);
    const coldfront = find<Deployment>(
      committedObjects().map((m) => m.object),
      "Deployment",
      "coldfront",
    );
    expect(coldfront.spec.template.spec.containers[0]?.args).toEqual(cmd);
    // The chart spells out both, so that its heap flags show and extraArgs can follow.
    const chart = chartDeployment().spec.template.spec.containers[0] as {
      command?: string[];
      args?: string[];
    };
    expect(chart.command).toEqual(JSON.parse(last(runtime, "ENTRYPOINT") ?? "null"));
    expect(chart.args).toEqual(cmd);
  });

  it("has in its build context (.dockerignore is an allow-list) every path it copies from it", () => {
    const allowed = readText(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l.startsWith("!"))
      .map((l) => l.slice(1).replace(/\/$/, ""));
    const fromContext = stages
      .flatMap((s) => s.steps)
      .filter((i) => i.op === "COPY" && !i.args.startsWith("--from"))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(fromContext.length).toBeGreaterThan(0);
    for (const path of fromContext) expect(allowed, path).toContain(path.replace(/\/$/, ""));
  });
});

describe("the runtime stage's production dependencies", () => {
  it("are all that src/ imports at run time (devDependencies are not in the image)", () => {
    const pkg = JSON.parse(readText("package.json")) as { dependencies: Record<string, string> };
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.name.endsWith(".ts")) files.push(join(dir, e.name));
      }
    };
    walk(join(ROOT, "src"));
    const missing: string[] = [];
    let imports = 0;
    for (const file of files) {
      const text = readFileSync(file, "utf8");
      // `import type` is erased by tsc; everything else (side-effect and dynamic imports too) loads.
      const specs = [
        ...text.matchAll(/^\s*(?:import|export)(?!\s+type\s)[^"';]*?from\s+"([^"]+)"/gm),
        ...text.matchAll(/^\s*import\s+"([^"]+)"/gm),
        ...text.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g),
      ].map((m) => m[1]!);
      for (const spec of specs) {
        if (spec.startsWith(".")) continue;
        imports++;
        const bare = spec.replace(/^node:/, "");
        if (spec.startsWith("node:") || builtinModules.includes(bare)) continue;
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
        if (!(name in pkg.dependencies)) missing.push(`${relative(ROOT, file)}: ${spec}`);
      }
    }
    expect(imports).toBeGreaterThan(10);
    expect(missing).toEqual([]);
  });
});
