/**
 * The CLI's Node version check (DESIGN.md "Runtime"): on an older Node, one message that names
 * the running version, the one needed and how to run the pinned Node, and exit 2, before undici
 * or fastify load and fail with errors that say nothing about the version.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, test } from "vitest";
import { MIN_NODE_MAJOR, nodeVersionProblem } from "../../src/cli/node-version.js";
import { CLI, ensureBuilt, ROOT } from "../helpers/cli.js";

beforeAll(() => ensureBuilt());

function run(node: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(node, args, { cwd: ROOT, encoding: "utf8", timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectTooOld(r: ReturnType<typeof run>, version: string): void {
  expect(r.status).toBe(2);
  expect(r.stdout).toBe("");
  expect(r.stderr).toContain(`needs Node.js ${MIN_NODE_MAJOR} or later; this is Node.js ${version}`);
  for (const how of ["npm start", "npx coldfront", "node_modules/.bin"]) expect(r.stderr).toContain(how);
  // The check's own message, not a crash inside a library.
  expect(r.stderr).not.toContain("at ");
}

/** A Node older than the floor outside node_modules (the machine's own), if there is one. */
function systemOldNode(): { path: string; version: string } | undefined {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((d) => d && !d.includes("node_modules"));
  for (const dir of [...dirs, "/usr/local/bin", "/usr/bin"]) {
    const path = join(dir, "node");
    try {
      accessSync(path, constants.X_OK);
    } catch {
      continue;
    }
    const r = spawnSync(path, ["-p", "process.versions.node"], { encoding: "utf8", timeout: 20_000 });
    const version = r.stdout?.trim();
    if (r.status === 0 && version && Number.parseInt(version, 10) < MIN_NODE_MAJOR) return { path, version };
  }
  return undefined;
}

describe("Node version check", () => {
  test("the floor is package.json's engines.node, and the pinned node devDependency meets it", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
      engines: { node: string };
      devDependencies: Record<string, string>;
    };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_MAJOR}`);
    expect(Number.parseInt(pkg.devDependencies.node ?? "", 10)).toBeGreaterThanOrEqual(MIN_NODE_MAJOR);
  });

  test("versions below the floor get the message, the floor and above none", () => {
    for (const v of ["20.20.2", "22.19.0", "23.11.1"]) expect(nodeVersionProblem(v, "/x/node")).toContain(v);
    for (const v of [`${MIN_NODE_MAJOR}.0.0`, `${MIN_NODE_MAJOR}.21.0`, "26.1.0"])
      expect(nodeVersionProblem(v, "/x/node")).toBeUndefined();
  });

  test("this Node, made to report an old version: exit 2 with the message, nothing run", () => {
    // Loaded before the CLI, so the CLI sees the fake: a check from any other source than
    // process.versions would not be fooled, and the test would fail.
    const shim = join(mkdtempSync(join(tmpdir(), "coldfront-old-node-")), "old-node.mjs");
    writeFileSync(
      shim,
      [
        'Object.defineProperty(process, "versions", { value: { ...process.versions, node: "20.19.0" } });',
        'Object.defineProperty(process, "version", { value: "v20.19.0" });',
        "",
      ].join("\n"),
    );
    expectTooOld(run(process.execPath, ["--import", pathToFileURL(shim).href, CLI, "--help"]), "20.19.0");
    // Without the shim the same command runs.
    expect(run(process.execPath, [CLI, "--help"]).status).toBe(0);
  });

  const old = systemOldNode();
  test.skipIf(old === undefined)(`the machine's own older Node (${old?.path ?? "none found"})`, () => {
    const { path, version } = old as { path: string; version: string };
    expectTooOld(run(path, [CLI, "--help"]), version);
  });
});
