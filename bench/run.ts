/**
 * `npm run bench [-- --quick] [--profile] [--only warm,...] [--node-options ...]` (bench/README.md):
 * every system side by side on 127.0.0.1, each in its own process, and a results file in
 * bench/results/<UTC timestamp>.md with one table per scenario (DESIGN.md "Benchmarks"), plus the
 * cold-burst chart next to it and copied to bench/cold-burst.svg.
 *
 * Every scenario is bounded in time, and every process it starts is stopped at its end, on
 * failure too; a failed scenario is reported in the file and the others still run.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, freemem, loadavg, release, tmpdir, totalmem } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { RESULTS_DIR, ROOT } from "./lib/paths.js";
import { stopAll } from "./lib/procs.js";
import { summarizeProfiles } from "./lib/profile.js";
import {
  type Check,
  type Context,
  failedSection,
  renderChecks,
  renderSection,
  type ScenarioResult,
  type Section,
} from "./lib/report.js";
import { type BurstChart, coldBurstSvg } from "./lib/svg.js";
import {
  type Backend,
  isSkipped,
  nginxVersion,
  SYSTEMS,
  type System,
  startBackend,
  startSystem,
  type Workspace,
} from "./lib/systems.js";
import { coldBurst } from "./scenarios/cold-burst.js";
import { holdCapacity } from "./scenarios/hold.js";
import { pacedStreaming } from "./scenarios/paced.js";
import { wakeSignal } from "./scenarios/wake.js";
import { warmNonStreaming, warmStreaming } from "./scenarios/warm.js";

const SCENARIOS = ["warm", "stream", "paced", "cold", "hold", "wake"] as const;
type Scenario = (typeof SCENARIOS)[number];

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    only: { type: "string" },
    "keep-tmp": { type: "boolean", default: false },
    "node-options": { type: "string" },
    held: { type: "string" },
  },
});
const only = new Set<Scenario>(
  values.only === undefined ? SCENARIOS : (values.only.split(",").map((s) => s.trim()) as Scenario[]),
);
for (const s of only) {
  if (!SCENARIOS.includes(s)) {
    process.stderr.write(`unknown scenario '${s}'; choose from ${SCENARIOS.join(", ")}\n`);
    process.exit(2);
  }
}

const started = new Date();
const stamp = started
  .toISOString()
  .replace(/[-:]/g, "")
  .replace(/\.\d+Z$/, "Z");
const profileDir = join(RESULTS_DIR, `${stamp}-profile`);
const ws: Workspace = {
  dir: mkdtempSync(join(tmpdir(), "coldfront-bench-")),
  profileDir: values.profile ? profileDir : undefined,
  coldfrontNodeOptions: values["node-options"],
};
const t0 = performance.now();
const log = (message: string) => {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
};
const held = values.held?.split(",").map((n) => Number(n.trim()));
if (held?.some((n) => !Number.isInteger(n) || n < 1)) {
  process.stderr.write(`--held takes whole numbers separated by commas, got '${values.held}'\n`);
  process.exit(2);
}
const ctx: Context = { quick: values.quick, ws, log, ...(held ? { held } : {}) };

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping every child process`);
    void stopAll().finally(() => process.exit(130));
  });
}

function commandLine(): string {
  const args = process.argv.slice(2).join(" ");
  const npm = process.env.npm_lifecycle_event === "bench";
  const direct = `node ${relative(ROOT, process.argv[1] ?? "")}${args ? ` ${args}` : ""}`;
  return npm ? `npm run bench${args ? ` -- ${args}` : ""}  (${direct})` : direct;
}

function loadAverage(when: "start" | "end"): string {
  return `${loadavg()
    .map((l) => l.toFixed(2))
    .join(", ")} (${when})`;
}

const sections: Section[] = [];
const checks: Check[] = [];
const skippedNotes: string[] = [];
let chart: BurstChart | undefined;
const loadAtStart = loadAverage("start");

async function scenario(title: string, run: () => Promise<ScenarioResult>): Promise<void> {
  if (interrupted) return;
  try {
    const r = await run();
    sections.push(r.section);
    checks.push(...r.checks);
  } catch (err) {
    log(`${title} failed: ${(err as Error).message}`);
    sections.push(failedSection(title, err));
  }
}

async function warmScenarios(): Promise<void> {
  const wanted: Scenario[] = ["warm", "stream", "paced"];
  if (!wanted.some((s) => only.has(s))) return;
  let backend: Backend | undefined;
  const systems: System[] = [];
  try {
    backend = await startBackend(ws);
    for (const name of SYSTEMS) {
      const s = await startSystem(ws, name, backend.url);
      if (isSkipped(s)) {
        log(`${name} skipped: ${s.skipped}`);
        skippedNotes.push(`${name} skipped: ${s.skipped}`);
      } else systems.push(s);
    }
    if (only.has("warm")) await scenario("1. Warm non-streaming", () => warmNonStreaming(ctx, systems));
    if (only.has("stream")) await scenario("2a. Warm streaming", () => warmStreaming(ctx, systems));
    if (only.has("paced")) await scenario("2b. Paced streaming", () => pacedStreaming(ctx, systems));
  } finally {
    // coldfront first: with --profile it writes its profile on a graceful exit.
    for (const s of systems) await s.stop();
    await backend?.stop();
  }
}

async function main(): Promise<void> {
  log(`${values.quick ? "quick" : "full"} run; scratch directory ${ws.dir}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  try {
    await warmScenarios();
  } catch (err) {
    sections.push(failedSection("Warm scenarios", err));
  }
  if (only.has("cold")) {
    await scenario("3. Cold burst", async () => {
      const r = await coldBurst(ctx);
      chart = r.chart;
      return r;
    });
  }
  if (only.has("hold")) await scenario("4. Hold capacity", () => holdCapacity(ctx));
  if (only.has("wake")) await scenario("5. Wake signal", () => wakeSignal(ctx));
}

try {
  await main();
} finally {
  await stopAll();
}

const file = join(RESULTS_DIR, `${stamp}.md`);
const facts = [
  ["CPU", `${cpus()[0]?.model ?? "unknown"}, ${cpus().length} cores`],
  ["Node.js", process.version],
  ["nginx", nginxVersion() ?? "not installed"],
  ["Kernel", `Linux ${release()}`],
  [
    "Memory",
    `${(totalmem() / 2 ** 30).toFixed(1)} GiB (${(freemem() / 2 ** 30).toFixed(1)} GiB free at the end)`,
  ],
  ["Load average (1, 5, 15 min)", `${loadAtStart}; ${loadAverage("end")}`],
  ["Load generator", "autocannon 9 (its own process); custom undici clients for bursts and paced streams"],
  ["Backend", "bench/backend.ts (node:http, prebuilt answers), its own process"],
  ...(values["node-options"] ? [["coldfront NODE_OPTIONS", `\`${values["node-options"]}\``]] : []),
];
const svgName = `${stamp}-cold-burst.svg`;
const parts = [
  `# coldfront benchmarks, ${started.toISOString()}`,
  `Command: \`${commandLine()}\`${values.quick ? "\n\n**Quick smoke run**: short single runs; indicative only, not for comparison." : ""}`,
  `Total time ${((performance.now() - t0) / 1000).toFixed(0)} s.`,
  "## Machine",
  ["| | |", "| --- | --- |", ...facts.map(([k, v]) => `| ${k} | ${v} |`)].join("\n"),
  ...(skippedNotes.length > 0 ? [skippedNotes.map((n) => `- ${n}`).join("\n")] : []),
  "## Targets (issue 7)",
  checks.length > 0 ? renderChecks(checks) : "No target could be checked in this run.",
  ...sections.map(renderSection),
];
if (chart) {
  writeFileSync(join(RESULTS_DIR, svgName), coldBurstSvg(chart));
  copyFileSync(join(RESULTS_DIR, svgName), join(ROOT, "bench", "cold-burst.svg"));
  parts.push(`![cold burst](${svgName})`);
}
if (values.profile) {
  const summary = summarizeProfiles(profileDir);
  if (summary) {
    writeFileSync(join(RESULTS_DIR, `${stamp}-profile.txt`), summary);
    parts.push(
      `CPU profiles of every coldfront process, by scenario: \`${stamp}-profile/\`; self-time summary in \`${stamp}-profile.txt\`.`,
    );
  }
}
writeFileSync(file, `${parts.join("\n\n")}\n`);
if (!values["keep-tmp"]) rmSync(ws.dir, { recursive: true, force: true });
log(`results: ${relative(ROOT, file)}`);
process.stdout.write(`${relative(ROOT, file)}\n`);
const failed = sections.some((s) => s.about.startsWith("This scenario failed"));
process.exit(interrupted ? 130 : failed ? 1 : 0);
