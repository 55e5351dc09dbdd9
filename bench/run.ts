/**
 * `npm run bench [-- --quick] [--only warm,...] [--pin|--no-pin] [--otel] [--baseline REF] ...`
 * (bench/README.md): every system side by side on 127.0.0.1, each in its own process, and a
 * results file in bench/results/<UTC timestamp>.md with the goals table and one table per
 * scenario (DESIGN.md "Benchmarks"), plus the cold-burst and flood charts next to it.
 *
 * Every scenario is bounded in time, and every process it starts is stopped at its end, on
 * failure too; a failed scenario is reported in the file and the others still run.
 */
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { cpus, freemem, loadavg, release, tmpdir, totalmem } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { type Baseline, buildBaseline } from "./lib/baseline.js";
import { describeGenerator, type Generator, WRK } from "./lib/load.js";
import { benchScript, RESULTS_DIR, ROOT } from "./lib/paths.js";
import { CPU_SOURCE } from "./lib/proc-stats.js";
import { Child, configurePinning, freePort, type Pinning, stopAll, waitForPort } from "./lib/procs.js";
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
  haproxyVersion,
  isSkipped,
  nginxVersion,
  SYSTEMS,
  type System,
  startBackend,
  startSystem,
  startVariant,
  type Variant,
  type Workspace,
} from "./lib/systems.js";
import { coldBurst } from "./scenarios/cold-burst.js";
import { coldBurstLongGenerations } from "./scenarios/cold-gen.js";
import { flood } from "./scenarios/flood.js";
import { holdCapacity } from "./scenarios/hold.js";
import { pacedStreaming } from "./scenarios/paced.js";
import { pacedCpu } from "./scenarios/paced-cpu.js";
import { releaseAtCapacity } from "./scenarios/release.js";
import { wakeSignal } from "./scenarios/wake.js";
import { warmNonStreaming, warmStreaming } from "./scenarios/warm.js";

const SCENARIOS = [
  "warm",
  "stream",
  "paced",
  "paced-1k",
  "cold",
  "cold-gen",
  "hold",
  "wake",
  "flood",
  "release",
] as const;
type Scenario = (typeof SCENARIOS)[number];
/** The scenarios in front of one warm backend, sharing its systems. */
const WARM: readonly Scenario[] = ["warm", "stream", "paced", "paced-1k"];

function usage(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  allowNegative: true,
  options: {
    quick: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    only: { type: "string" },
    "keep-tmp": { type: "boolean", default: false },
    "node-options": { type: "string" },
    "coldfront-env": { type: "string" },
    held: { type: "string" },
    pin: { type: "boolean" },
    "load-generator": { type: "string" },
    otel: { type: "boolean", default: false },
    baseline: { type: "string" },
  },
});
const only = new Set<Scenario>(
  values.only === undefined ? SCENARIOS : (values.only.split(",").map((s) => s.trim()) as Scenario[]),
);
for (const s of only) {
  if (!SCENARIOS.includes(s)) usage(`unknown scenario '${s}'; choose from ${SCENARIOS.join(", ")}`);
}
const held = values.held?.split(",").map((n) => Number(n.trim()));
if (held?.some((n) => !Number.isInteger(n) || n < 1)) {
  usage(`--held takes whole numbers separated by commas, got '${values.held}'`);
}
const coldfrontEnv: Record<string, string> = {};
for (const pair of (values["coldfront-env"] ?? "").split(/\s+/).filter(Boolean)) {
  const eq = pair.indexOf("=");
  if (eq <= 0) usage(`--coldfront-env takes "K=V K2=V2", got '${pair}'`);
  coldfrontEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
}
const generatorArg = values["load-generator"] ?? (WRK ? "wrk" : "autocannon");
if (generatorArg !== "wrk" && generatorArg !== "autocannon") {
  usage(`--load-generator is wrk or autocannon, got '${generatorArg}'`);
}
if (generatorArg === "wrk" && !WRK) usage("--load-generator wrk: wrk is not installed (apt-get install wrk)");
const generator: Generator = generatorArg;

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
  coldfrontEnv,
};
const t0 = performance.now();
// Progress goes to stderr; a reader that went away (`| head`) must not end the run half-way.
process.stderr.on("error", () => {});
process.stdout.on("error", () => {});
const log = (message: string) => {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
};
const ctx: Context = { quick: values.quick, ws, log, generator, ...(held ? { held } : {}) };

/**
 * --pin (default on with 2 cores or more): the system under test on CPU 0, everything that
 * drives it (load generators, the backend, the OTLP sink, this harness) on the others, as the
 * goals' reference figures were measured (bench/README.md, the `--pin` option).
 */
function setUpPinning(): string {
  const allowed = allowedCpus();
  const n = allowed.length;
  const wanted = values.pin ?? n >= 2;
  if (!wanted) return values.pin === false ? "off (--no-pin)" : `off (${n} core)`;
  if (n < 2) return `off: --pin needs 2 cores, this process may use ${n}`;
  const taskset = spawnSync("taskset", ["-p", String(process.pid)], { encoding: "utf8" });
  if (taskset.error || taskset.status !== 0) {
    const why = "taskset (util-linux) is not available or failed";
    log(`pinning off: ${why}`);
    return `off: ${why}`;
  }
  const p: Pinning = { sut: String(allowed[0]), load: allowed.slice(1).join(",") };
  // The harness itself polls and samples: it belongs with the load side.
  spawnSync("taskset", ["-pc", p.load, String(process.pid)]);
  configurePinning(p);
  return `on: system under test on CPU ${p.sut} (\`taskset -c ${p.sut}\`); load generators, backend, OTLP sink and this harness on CPU ${p.load}`;
}

/** The CPUs this process may run on (a container's cpuset may not start at 0). */
function allowedCpus(): number[] {
  try {
    const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "";
    const out: number[] = [];
    for (const part of list.split(",")) {
      const [a, b] = part.split("-").map(Number);
      if (a === undefined || !Number.isInteger(a)) continue;
      for (let c = a; c <= (b ?? a); c++) out.push(c);
    }
    if (out.length > 0) return out;
  } catch {}
  return cpus().map((_, i) => i);
}

const pinning = setUpPinning();

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
const notes: string[] = [];
const variantFacts: [string, string][] = [];
let chart: BurstChart | undefined;
let floodChart: string | undefined;
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

/** The OTLP sink of `--otel`, its own process on the load side. */
async function startSink(): Promise<{ url: string; child: Child; stats(): Promise<string> }> {
  const port = await freePort();
  const child = Child.spawn(
    "otlp-sink",
    process.execPath,
    [benchScript("systems/otlp-sink.js"), "--port", String(port)],
    {
      logFile: join(ws.dir, "otlp-sink.log"),
      role: "load",
    },
  );
  await waitForPort(port, child);
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    child,
    async stats() {
      try {
        const res = await fetch(`${url}/__bench/stats`, { signal: AbortSignal.timeout(2000) });
        const s = (await res.json()) as { requests: number; bytes: number; paths: Record<string, number> };
        const paths = Object.entries(s.paths)
          .map(([p, n]) => `${p} × ${n}`)
          .join(", ");
        return s.requests === 0
          ? "the OTLP sink received nothing: this coldfront ignored the OTEL_* variables (no tracing in this build), so coldfront+otel measures the same code as coldfront"
          : `the OTLP sink received ${s.requests} export requests, ${(s.bytes / 1024).toFixed(0)} KiB (${paths})`;
      } catch (err) {
        return `the OTLP sink could not be read: ${(err as Error).message}`;
      }
    },
  };
}

/** The coldfront variants of this run (--otel, --baseline), built or started as needed. */
async function variants(sinkUrl: string | undefined, baseline: Baseline | undefined): Promise<Variant[]> {
  const out: Variant[] = [];
  if (sinkUrl) {
    out.push({
      name: "coldfront+otel",
      env: {
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl,
        OTEL_SERVICE_NAME: "coldfront-bench",
      },
      scenarios: ["warm"],
    });
  }
  if (baseline) {
    out.push({ name: `coldfront@${baseline.ref}`, build: baseline.build, scenarios: WARM });
  }
  return out;
}

async function warmScenarios(): Promise<void> {
  if (!WARM.some((s) => only.has(s))) return;
  let backend: Backend | undefined;
  let sink: Awaited<ReturnType<typeof startSink>> | undefined;
  const systems: { system: System; scenarios: readonly string[] }[] = [];
  try {
    let baseline: Baseline | undefined;
    if (values.baseline) {
      try {
        baseline = buildBaseline(ws.dir, values.baseline, log);
        variantFacts.push([
          `coldfront@${values.baseline}`,
          `commit ${baseline.sha.slice(0, 12)} "${baseline.subject}", built by this checkout's tsc into the scratch directory${baseline.warnings ? " (tsc reported type errors and emitted anyway)" : ""}`,
        ]);
        if (baseline.warnings) log(`baseline: tsc warnings:\n${baseline.warnings}`);
      } catch (err) {
        log(`baseline skipped: ${(err as Error).message}`);
        notes.push(`coldfront@${values.baseline} skipped: ${(err as Error).message.split("\n")[0]}`);
      }
    }
    if (values.otel && only.has("warm")) sink = await startSink();
    backend = await startBackend(ws);
    for (const name of SYSTEMS) {
      const s = await startSystem(ws, name, backend.url);
      if (isSkipped(s)) {
        log(`${name} skipped: ${s.skipped}`);
        notes.push(`${name} skipped: ${s.skipped}`);
      } else systems.push({ system: s, scenarios: WARM });
    }
    for (const v of await variants(sink?.url, baseline)) {
      try {
        // Right after coldfront (and any variant before it) in table order.
        const s = await startVariant(ws, v, backend.url);
        const last = systems.map((x) => x.system.name.startsWith("coldfront")).lastIndexOf(true);
        systems.splice(last < 0 ? systems.length : last + 1, 0, { system: s, scenarios: v.scenarios });
      } catch (err) {
        log(`${v.name} skipped: ${(err as Error).message}`);
        notes.push(`${v.name} skipped: ${(err as Error).message.split("\n")[0]}`);
      }
    }
    const forScenario = (sc: Scenario) =>
      systems.filter((x) => x.scenarios.includes(sc)).map((x) => x.system);
    const backendPid = backend.child.pid;
    if (only.has("warm"))
      await scenario("1. Warm non-streaming", () => warmNonStreaming(ctx, forScenario("warm")));
    if (sink) variantFacts.push(["coldfront+otel", `warm JSON only; ${await sink.stats()}`]);
    if (only.has("stream"))
      await scenario("2a. Warm streaming", () => warmStreaming(ctx, forScenario("stream")));
    if (only.has("paced"))
      await scenario("2b. Paced streaming", () => pacedStreaming(ctx, forScenario("paced")));
    if (only.has("paced-1k")) {
      await scenario("2c. Paced streams at scale", () => pacedCpu(ctx, forScenario("paced-1k"), backendPid));
    }
  } finally {
    // coldfront first: with --profile it writes its profile on a graceful exit.
    for (const s of systems) await s.system.stop();
    await backend?.stop();
    await sink?.child.stop();
  }
}

async function main(): Promise<void> {
  log(`${values.quick ? "quick" : "full"} run; scratch directory ${ws.dir}; pinning ${pinning}`);
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
  if (only.has("cold-gen"))
    await scenario("3b. Cold burst with long generations", () => coldBurstLongGenerations(ctx));
  if (only.has("hold")) await scenario("4. Hold capacity", () => holdCapacity(ctx));
  if (only.has("wake")) await scenario("5. Wake signal", () => wakeSignal(ctx));
  if (only.has("flood")) {
    await scenario("6. Memory flood", async () => {
      const r = await flood(ctx);
      floodChart = r.chart;
      return r;
    });
  }
  if (only.has("release")) await scenario("7. Release at capacity", () => releaseAtCapacity(ctx));
}

try {
  await main();
} finally {
  await stopAll();
}

const file = join(RESULTS_DIR, `${stamp}.md`);
const facts: [string, string][] = [
  ["CPU", `${cpus()[0]?.model ?? "unknown"}, ${cpus().length} cores`],
  ["CPU pinning", pinning],
  ["Node.js", process.version],
  ["nginx", nginxVersion() ?? "not installed"],
  ["HAProxy", haproxyVersion() ?? "not installed"],
  ["Kernel", `Linux ${release()}`],
  [
    "Memory",
    `${(totalmem() / 2 ** 30).toFixed(1)} GiB (${(freemem() / 2 ** 30).toFixed(1)} GiB free at the end)`,
  ],
  ["Load average (1, 5, 15 min)", `${loadAtStart}; ${loadAverage("end")}`],
  ["Load generator", describeGenerator(generator)],
  ["Backend", "bench/backend.ts (node:http, prebuilt answers), its own process"],
  ["Proxy CPU time", CPU_SOURCE],
  ...(values["node-options"]
    ? [["coldfront NODE_OPTIONS", `\`${values["node-options"]}\``] as [string, string]]
    : []),
  ...(values["coldfront-env"]
    ? [["coldfront environment", `\`${values["coldfront-env"]}\``] as [string, string]]
    : []),
  ...variantFacts,
];
const svgName = `${stamp}-cold-burst.svg`;
const floodSvgName = `${stamp}-flood.svg`;
const parts = [
  `# coldfront benchmarks, ${started.toISOString()}`,
  `Command: \`${commandLine()}\`${values.quick ? "\n\n**Quick smoke run**: short single runs; indicative only, not for comparison." : ""}`,
  `Total time ${((performance.now() - t0) / 1000).toFixed(0)} s.`,
  "## Machine",
  ["| | |", "| --- | --- |", ...facts.map(([k, v]) => `| ${k} | ${v.replace(/\|/g, "\\|")} |`)].join("\n"),
  ...(notes.length > 0 ? [notes.map((n) => `- ${n}`).join("\n")] : []),
  "## Goals (issue 13, and those of issues 7, 10 and 11 that still apply)",
  checks.length > 0 ? renderChecks(checks) : "No goal could be checked in this run.",
  ...sections.map(renderSection),
];
if (chart) {
  writeFileSync(join(RESULTS_DIR, svgName), coldBurstSvg(chart));
  // The README's chart comes from full runs only.
  if (!values.quick) copyFileSync(join(RESULTS_DIR, svgName), join(ROOT, "bench", "cold-burst.svg"));
  parts.push(`![cold burst](${svgName})`);
}
if (floodChart) {
  writeFileSync(join(RESULTS_DIR, floodSvgName), floodChart);
  if (!values.quick) copyFileSync(join(RESULTS_DIR, floodSvgName), join(ROOT, "bench", "flood.svg"));
  parts.push(`![memory flood](${floodSvgName})`);
}
if (values.profile) {
  const summary = existsSync(profileDir) ? summarizeProfiles(profileDir) : "";
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
