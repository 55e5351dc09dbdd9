/**
 * The heap flags coldfront runs with (src/cli.ts's first line) are passed in three places: the
 * executable's shebang, `npm start` and the image's entrypoint. A flag changed in one and not the
 * others would make the demo, the image and `npx coldfront` measure different programs.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { CLI, ensureBuilt, ROOT } from "../helpers/cli.js";

function shebangFlags(file: string): string[] {
  const first = readFileSync(file, "utf8").split("\n", 1)[0] ?? "";
  const m = /^#!\/usr\/bin\/env -S node((?: --[a-z0-9-]+(?:=\S+)?)*)$/.exec(first);
  if (m === null) throw new Error(`${file}: unexpected first line ${first}`);
  return (m[1] ?? "").trim().split(/\s+/);
}

describe("node flags", () => {
  beforeAll(() => ensureBuilt());

  it("the shebang of src/cli.ts survives the build", () => {
    expect(shebangFlags(CLI)).toEqual(shebangFlags(join(ROOT, "src/cli.ts")));
  });

  it("npm start and the image's entrypoint pass the shebang's flags", () => {
    const flags = shebangFlags(join(ROOT, "src/cli.ts"));
    expect(flags).toContain("--max-semi-space-size=4");
    expect(flags).toContain("--heap-growing-percent=50");

    const start = (
      JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: { start: string } }
    ).scripts.start;
    const npmFlags = /\bnode((?: --[a-z0-9-]+(?:=\S+)?)*) dist\/cli\.js\b/.exec(start);
    expect(npmFlags?.[1]?.trim().split(/\s+/)).toEqual(flags);

    const docker = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(docker);
    expect(JSON.parse(entry?.[1] ?? "[]")).toEqual(["node", ...flags, "dist/cli.js"]);
  });

  it("this Node accepts every one of them (a misspelt V8 flag is a startup error)", () => {
    const flags = shebangFlags(join(ROOT, "src/cli.ts"));
    const out = execFileSync(process.execPath, [...flags, "-e", "process.stdout.write('ok')"], {
      encoding: "utf8",
    });
    expect(out).toBe("ok");
    expect(() =>
      execFileSync(process.execPath, ["--heap-growing-percnt=50", "-e", "0"], { stdio: "pipe" }),
    ).toThrow();
  });
});
