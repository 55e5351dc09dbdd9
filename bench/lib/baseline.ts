/**
 * `--baseline <git ref>`: coldfront built from another commit, run side by side with this
 * checkout's build in the warm scenarios as `coldfront@<ref>`.
 *
 * Read-only for the repository: `git archive` of the commit into the scratch directory (no
 * worktree metadata, index or HEAD touched), this checkout's node_modules linked in (no npm ci),
 * and this checkout's tsc compiling the commit's src/ against the commit's tsconfig.json.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./paths.js";
import type { ColdfrontBuild } from "./systems.js";

export interface Baseline {
  readonly ref: string;
  readonly sha: string;
  readonly subject: string;
  readonly build: ColdfrontBuild;
  /** tsc's complaints, if it emitted anyway (type errors against today's dependencies). */
  readonly warnings: string | undefined;
}

function git(args: readonly string[]): string {
  const out = spawnSync("git", ["-C", ROOT, ...args], { encoding: "utf8", timeout: 30_000 });
  if (out.status !== 0) throw new Error(`git ${args.join(" ")}: ${(out.stderr || out.stdout).trim()}`);
  return out.stdout.trim();
}

export function buildBaseline(scratch: string, ref: string, log: (m: string) => void): Baseline {
  const sha = git(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]);
  const subject = git(["log", "-1", "--format=%s", sha]);
  const dir = join(scratch, `baseline-${sha.slice(0, 12)}`);
  mkdirSync(dir, { recursive: true });
  log(`baseline: extracting ${ref} (${sha.slice(0, 12)}) into ${dir}`);
  const archive = spawnSync(
    "/bin/sh",
    ["-c", 'git -C "$0" archive --format=tar "$1" | tar -x -C "$2"', ROOT, sha, dir],
    {
      encoding: "utf8",
      timeout: 60_000,
    },
  );
  if (archive.status !== 0) throw new Error(`git archive ${sha}: ${archive.stderr.trim()}`);
  if (!existsSync(join(dir, "src", "cli.ts"))) throw new Error(`${ref} has no src/cli.ts`);
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  // Only src/ is needed; the commit's own bench/ and tests are not built.
  writeFileSync(
    join(dir, "tsconfig.baseline.json"),
    JSON.stringify({
      extends: "./tsconfig.json",
      compilerOptions: { rootDir: ".", outDir: "dist-bench", noEmitOnError: false },
      include: ["src"],
    }),
  );
  log(`baseline: compiling ${ref}`);
  const tsc = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(dir, "tsconfig.baseline.json")],
    { cwd: dir, encoding: "utf8", timeout: 300_000 },
  );
  const cli = join(dir, "dist-bench", "src", "cli.js");
  if (!existsSync(cli)) {
    throw new Error(`tsc emitted no ${cli}: ${(tsc.stdout + tsc.stderr).trim().slice(0, 2000)}`);
  }
  const warnings = tsc.status === 0 ? undefined : (tsc.stdout + tsc.stderr).trim().slice(0, 2000);
  return { ref, sha, subject, build: { dist: join(dir, "dist-bench"), proto: join(dir, "proto") }, warnings };
}
