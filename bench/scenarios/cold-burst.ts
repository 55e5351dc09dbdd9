/**
 * Scenario 3: N concurrent requests arrive while the backend's port is closed; the backend opens
 * it T seconds later. Through coldfront they are held and released once its probe sees /health
 * pass; through nginx, or with no proxy at all, they fail at once. "Added after ready" is each
 * request's completion time minus the instant the backend started listening: probe detection
 * (heldInterval 50 ms), the release at release.concurrency 64, and the backend's own work.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { type Sample, startSampler } from "../lib/admin.js";
import { type BurstOutcome, outcomeSummary, startBurst } from "../lib/burst.js";
import { freePort } from "../lib/procs.js";
import { type Check, type Context, LEAD, type ScenarioResult } from "../lib/report.js";
import { fmt, max, percentile } from "../lib/stats.js";
import type { BurstChart } from "../lib/svg.js";
import {
  type Backend,
  isSkipped,
  type System,
  startBackend,
  startColdfront,
  startSystem,
} from "../lib/systems.js";

const TARGET = "model";
type BurstSystem = "direct" | "coldfront" | "nginx";
/**
 * The floor: the same burst sent straight to a backend that has just started and is up. Its
 * p50/p99 are plain request latencies: what a fresh backend takes for N concurrent requests
 * with nothing in between, which no proxy can beat.
 */
const FLOOR = "direct, backend up (floor)";

interface BurstRun {
  readonly system: BurstSystem | typeof FLOOR;
  readonly n: number;
  readonly outcome?: BurstOutcome;
  readonly readyAt?: number;
  readonly samples?: readonly Sample[];
  readonly skipped?: string;
}

/** coldfront in front of a backend that is down: a probe readiness on its /health. */
export function coldConfig(upstream: string, maxPending: number, label: string) {
  return {
    name: TARGET,
    label,
    upstream,
    // One client address sends everything here, so it may fill the whole queue.
    config: { limits: { maxPending, maxClientShare: 1 } },
    target: { readiness: { probe: { url: `${upstream}/health`, interval: "1s", heldInterval: "50ms" } } },
  };
}

async function burstThrough(
  ctx: Context,
  system: BurstSystem,
  n: number,
  readyAfter: number,
): Promise<BurstRun> {
  const port = await freePort();
  const upstream = `http://127.0.0.1:${port}`;
  let front: System | undefined;
  let backend: Backend | undefined;
  let sampler: ReturnType<typeof startSampler> | undefined;
  try {
    let url = upstream;
    if (system === "coldfront") {
      const cf = await startColdfront(ctx.ws, coldConfig(upstream, Math.max(n, 1000), `cold-burst-${n}`));
      front = cf;
      url = cf.url;
      sampler = startSampler(cf.adminUrl, TARGET);
    } else if (system === "nginx") {
      const s = await startSystem(ctx.ws, "nginx", upstream);
      if (isSkipped(s)) return { system, n, skipped: s.skipped };
      front = s;
      url = s.url;
    }
    ctx.log(`cold burst: ${n} requests through ${system}, backend ready after ${readyAfter} ms`);
    const client = startBurst(ctx.ws, { url, n, timeoutMs: readyAfter + 120_000 });
    backend = await startBackend(ctx.ws, readyAfter, port);
    const outcome = await client.result();
    // A few more samples, so the chart shows the counts back at zero.
    if (sampler) await sleep(200);
    const succeeded = outcome.status.some((s) => s === 200);
    // Failures come at once; the ready instant only matters for what succeeded.
    const readyAt = succeeded ? await backend.readyAt() : undefined;
    const samples = await sampler?.stop();
    return { system, n, outcome, readyAt, samples };
  } finally {
    await sampler?.stop();
    await backend?.stop();
    await front?.stop();
  }
}

async function floorRun(ctx: Context, n: number): Promise<BurstRun> {
  const backend = await startBackend(ctx.ws);
  try {
    ctx.log(`cold burst: ${n} requests straight to a backend that is up (floor)`);
    const outcome = await startBurst(ctx.ws, { url: backend.url, n, timeoutMs: 120_000 }).result();
    return { system: FLOOR, n, outcome };
  } finally {
    await backend.stop();
  }
}

function analyse(r: BurstRun) {
  const o = r.outcome;
  if (!o) return undefined;
  const ok = o.status.map((s, i) => (s === 200 ? i : -1)).filter((i) => i >= 0);
  // From ready for held requests; from sending for the floor, whose backend was already up.
  const since = (i: number) => (r.system === FLOOR ? (o.sent[i] as number) : (r.readyAt as number));
  const added =
    r.system !== FLOOR && r.readyAt === undefined ? [] : ok.map((i) => (o.done[i] as number) - since(i));
  const releaseAll = added.length > 0 ? max(added) : Number.NaN;
  return {
    succeeded: ok.length,
    failed: r.n - ok.length,
    p50: percentile(added, 50),
    p99: percentile(added, 99),
    releaseAll,
    rate: ok.length / (releaseAll / 1000),
    maxHeld: r.samples ? max(r.samples.map((s) => s.pending)) : Number.NaN,
    answers: outcomeSummary(o),
  };
}

export async function coldBurst(ctx: Context): Promise<ScenarioResult & { chart?: BurstChart }> {
  const sizes = ctx.quick ? [100] : [100, 1000];
  const readyAfter = ctx.quick ? 2000 : 5000;
  const runs: BurstRun[] = [];
  for (const n of sizes) {
    for (const system of ["direct", "coldfront", "nginx"] as const) {
      runs.push(await burstThrough(ctx, system, n, readyAfter));
    }
    runs.push(await floorRun(ctx, n));
  }
  const rows = runs.map((r) => {
    const a = analyse(r);
    if (!a) return [r.system, "—", "—", "—", "—", "—", fmt(r.n), "—", "—", "—", "—", `skipped: ${r.skipped}`];
    return [
      r.system,
      fmt(a.rate),
      fmt(a.p50),
      fmt(a.p99),
      "—",
      "—",
      fmt(r.n),
      fmt(a.succeeded),
      fmt(a.failed),
      fmt(a.releaseAll),
      fmt(a.maxHeld),
      a.answers,
    ];
  });

  const largest = [...runs].reverse().find((r) => r.system === "coldfront" && r.outcome);
  const a = largest ? analyse(largest) : undefined;
  const floorRunOf = runs.find((r) => r.system === FLOOR && r.n === largest?.n);
  const floor = floorRunOf ? analyse(floorRunOf) : undefined;
  const quickNote = ctx.quick ? ` (quick run: N=${largest?.n})` : "";
  const checks: Check[] = [
    {
      source: "issue 7",
      target: `cold burst of 1,000: failures${quickNote}`,
      goal: "0",
      measured: a ? `${a.failed} of ${largest?.n}` : "—",
      met: a && largest?.n === 1000 ? a.failed === 0 : ctx.quick && a ? a.failed === 0 : undefined,
    },
    {
      source: "issue 7",
      target: `cold burst of 1,000: p99 added after ready${quickNote}`,
      goal: "< 100 ms",
      measured: a ? `${fmt(a.p99)} ms (floor: ${fmt(floor?.p99)} ms)` : "—",
      met: a ? a.p99 < 100 : undefined,
    },
  ];
  let chart: BurstChart | undefined;
  if (largest?.outcome && largest.readyAt !== undefined && largest.samples) {
    const o = largest.outcome;
    chart = {
      title: `Cold burst: ${largest.n} requests held by coldfront, backend ready after ${readyAfter / 1000} s`,
      samples: largest.samples,
      firstSent: Math.min(...o.sent),
      readyAt: largest.readyAt,
      completions: o.done.filter((_, i) => o.status[i] === 200),
      n: largest.n,
    };
  }
  return {
    section: {
      title: "3. Cold burst",
      about: `N concurrent requests (one connection each) arrive while the backend's port is closed; it opens ${readyAfter / 1000} s later. coldfront holds them (probe readiness on /health, heldInterval 50 ms, release.concurrency 64); nginx and direct clients meet the closed port. req/s is the release rate (successes per second from ready to the last completion); p50/p99 are the delay after the backend became ready, per successful request.`,
      tables: [
        {
          header: [
            ...LEAD("added after ready"),
            "N",
            "succeeded",
            "failed",
            "release all ms",
            "max held",
            "answers",
          ],
          rows,
        },
      ],
      notes: [
        "Ratios to direct and nginx are left out: both answer every request of the burst with an error, so there is nothing to divide by.",
        `"${FLOOR}": the same N concurrent requests sent to a backend that has just started and is listening, p50/p99 being their plain latencies. It is the floor for coldfront's release: coldfront's delay after ready = probe detection (up to heldInterval) + this, with at most release.concurrency requests in flight at once.`,
      ],
    },
    checks,
    chart,
  };
}
