/**
 * The Dockerfile, read as text: Docker is not available to the tests (no daemon on CI), so this
 * checks what the image promises and what the manifests rely on: Node 24, a build stage and a
 * production-only runtime stage, the files the runtime loads, a numeric non-root user that
 * matches the pods' runAsUser, the entrypoint the Deployments' args complete, and a build
 * context that holds what the COPY lines need.
 */
import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import type { K8sObject } from "./kustomize.js";
import { committedObjects, type Deployment, find, ROOT, readText } from "./manifests.js";

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  steps: Instruction[];
}

/** Dockerfile instructions by stage, comments and continuations handled, global ARGs expanded. */
function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, " ").split("\n");
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [, op = "", rest = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = op.toUpperCase();
    if (upper === "ARG" && stages.length === 0) {
      const [k, v = ""] = rest.split("=");
      args.set(k!.trim(), v.trim());
      continue;
    }
    if (upper === "FROM") {
      const expanded = rest.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args.get(a ?? b) ?? "");
      const [from = "", as, name] = expanded.split(/\s+/);
      stages.push({ from, name: as?.toUpperCase() === "AS" ? name : undefined, steps: [] });
      continue;
    }
    stages.at(-1)?.steps.push({ op: upper, args: rest });
  }
  return stages;
}

const stages = parseDockerfile(readText("Dockerfile"));
const [build, runtime] = stages;
const runs = (s: Stage | undefined) => (s?.steps ?? []).filter((i) => i.op === "RUN").map((i) => i.args);
const last = (s: Stage | undefined, op: string) => s?.steps.filter((i) => i.op === op).at(-1)?.args;

describe("Dockerfile", () => {
  it("builds in one Node 24 stage and runs in another", () => {
    expect(stages).toHaveLength(2);
    for (const s of stages) expect(s.from).toMatch(/^node:24([.-]|$)/);
    expect(build?.name).toBe("build");
    expect(runs(build).some((r) => /^npm ci\b/.test(r) && !r.includes("--omit"))).toBe(true);
    expect(runs(build).some((r) => r.startsWith("npm run build"))).toBe(true);
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
