/** Where things are at run time: the harness runs compiled, from dist-bench/bench/. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: dist-bench/bench/lib/ is three levels below it. */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** tsconfig.bench.json's outDir: src and bench, compiled side by side. */
export const DIST = join(ROOT, "dist-bench");
/** coldfront's CLI from the same build as the harness, so a benchmark never runs a stale dist/. */
export const COLDFRONT_CLI = join(DIST, "src", "cli.js");
export const RESULTS_DIR = join(ROOT, "bench", "results");

/** A compiled bench script, e.g. benchScript("backend.js"). */
export function benchScript(relative: string): string {
  return join(DIST, "bench", relative);
}
