/**
 * Scenario 3b (bench/README.md "The scenarios", 3b): a cold burst whose non-streaming generations take 2 s each
 * (`x-bench-gen-ms`), so that a release which counts a replay until its whole answer would
 * let only release.concurrency generations run at once. A burst of N is held and released; from
 * the backend's ready instant a stream of late arrivals follows (20 req/s). The same late
 * arrivals are sent direct to a backend that is serving the same burst: if a late arrival takes
 * longer through coldfront than direct, it waited behind the backlog.
 */
import { type BurstOutcome, outcomeSummary, startBurst } from "../lib/burst.js";
import { freePort } from "../lib/procs.js";
import { type Check, type Context, LEAD, type ScenarioResult } from "../lib/report.js";
import { fmt, max, percentile } from "../lib/stats.js";
import { type Backend, type Coldfront, startBackend, startColdfront } from "../lib/systems.js";
import { coldConfig } from "./cold-burst.js";

const GEN_MS = 2000;
const RATE = 20;

interface GenRun {
  readonly system: "coldfront" | "direct, backend up";
  readonly burst: BurstOutcome;
  readonly late: BurstOutcome;
  /** Epoch ms: the backend's ready instant (coldfront), or when the burst was sent (direct). */
  readonly from: number;
}

async function throughColdfront(ctx: Context, n: number, late: number, readyAfter: number): Promise<GenRun> {
  const port = await freePort();
  const upstream = `http://127.0.0.1:${port}`;
  let cf: Coldfront | undefined;
  let backend: Backend | undefined;
  const timeoutMs = readyAfter + 180_000;
  try {
    cf = await startColdfront(ctx.ws, coldConfig(upstream, n + late + 100, `cold-gen-${n}`));
    ctx.log(
      `cold burst, ${GEN_MS} ms generations: ${n} held by coldfront, backend ready after ${readyAfter} ms`,
    );
    const burst = startBurst(ctx.ws, { url: cf.url, n, genMs: GEN_MS, timeoutMs, tag: `gen-burst-${n}` });
    backend = await startBackend(ctx.ws, readyAfter, port);
    const readyAt = await backend.readyAt();
    ctx.log(`cold burst, ${GEN_MS} ms generations: ${late} late arrivals at ${RATE}/s through coldfront`);
    const lateClient = startBurst(ctx.ws, {
      url: cf.url,
      n: late,
      rate: RATE,
      genMs: GEN_MS,
      timeoutMs,
      tag: `gen-late-${n}`,
    });
    const [b, l] = await Promise.all([burst.result(), lateClient.result()]);
    return { system: "coldfront", burst: b, late: l, from: readyAt };
  } finally {
    await backend?.stop();
    await cf?.stop();
  }
}

async function direct(ctx: Context, n: number, late: number): Promise<GenRun> {
  const backend = await startBackend(ctx.ws);
  try {
    ctx.log(`cold burst, ${GEN_MS} ms generations: ${n} + ${late} late straight to a backend that is up`);
    const from = Date.now();
    const burst = startBurst(ctx.ws, {
      url: backend.url,
      n,
      genMs: GEN_MS,
      timeoutMs: 180_000,
      tag: `gen-floor-${n}`,
    });
    const lateClient = startBurst(ctx.ws, {
      url: backend.url,
      n: late,
      rate: RATE,
      genMs: GEN_MS,
      timeoutMs: 180_000,
      tag: `gen-floor-late-${n}`,
    });
    const [b, l] = await Promise.all([burst.result(), lateClient.result()]);
    return { system: "direct, backend up", burst: b, late: l, from };
  } finally {
    await backend.stop();
  }
}

function stats(o: BurstOutcome, since: (i: number) => number) {
  const ok = o.status.map((s, i) => (s === 200 ? i : -1)).filter((i) => i >= 0);
  const t = ok.map((i) => (o.done[i] as number) - since(i));
  return {
    n: o.status.length,
    ok: ok.length,
    p50: percentile(t, 50),
    p99: percentile(t, 99),
    max: t.length > 0 ? max(t) : Number.NaN,
    answers: outcomeSummary(o),
  };
}

export async function coldBurstLongGenerations(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.quick ? 200 : 1000;
  const seconds = ctx.quick ? 5 : 10;
  const late = RATE * seconds;
  const readyAfter = ctx.quick ? 2000 : 5000;
  const runs = [await throughColdfront(ctx, n, late, readyAfter), await direct(ctx, n, late)];
  const burstRows: string[][] = [];
  const lateRows: string[][] = [];
  const lateStats = new Map<string, ReturnType<typeof stats>>();
  for (const r of runs) {
    // The burst: after ready (coldfront), or after sending (direct, whose backend is up).
    const b = stats(r.burst, (i) => (r.system === "coldfront" ? r.from : (r.burst.sent[i] as number)));
    const l = stats(r.late, (i) => r.late.sent[i] as number);
    lateStats.set(r.system, l);
    burstRows.push([
      r.system,
      "—",
      fmt(b.p50),
      fmt(b.p99),
      "—",
      "—",
      fmt(b.n),
      fmt(b.ok),
      fmt(b.max),
      fmt(b.p99 - GEN_MS),
      b.answers,
    ]);
    lateRows.push([
      r.system,
      fmt(l.ok / seconds, 1),
      fmt(l.p50),
      fmt(l.p99),
      "—",
      "—",
      fmt(l.n),
      fmt(l.ok),
      fmt(l.max),
      fmt(l.p99 - GEN_MS),
      l.answers,
    ]);
  }
  const cf = lateStats.get("coldfront");
  const dir = lateStats.get("direct, backend up");
  const checks: Check[] = [
    {
      source: "issue 11",
      target: `late arrivals during a released backlog of ${fmt(n)} (${GEN_MS} ms generations): p99 through coldfront vs direct`,
      goal: "<= direct's p99 + 100 ms",
      measured:
        cf && dir ? `${fmt(cf.p99)} vs ${fmt(dir.p99)} ms (max ${fmt(cf.max)} vs ${fmt(dir.max)} ms)` : "—",
      met: cf && dir ? cf.ok === cf.n && cf.p99 <= dir.p99 + 100 : undefined,
    },
  ];
  return {
    section: {
      title: "3b. Cold burst with long generations",
      about: `Every request asks the backend for a ${GEN_MS} ms non-streaming generation (\`x-bench-gen-ms\`; the backend runs any number at once, its head comes when the generation is done). A burst of ${fmt(n)} (one connection each) is held by coldfront (probe readiness, heldInterval 50 ms, release settings at their defaults) while the backend's port is closed; it opens ${readyAfter / 1000} s later. From that instant, ${fmt(late)} late arrivals come at ${RATE}/s for ${seconds} s. The direct rows send the same burst and the same late arrivals straight to a backend that is up, at once: what the backend alone takes while serving that burst.`,
      tables: [
        {
          header: [
            ...LEAD("burst, after ready"),
            "N",
            "succeeded",
            "max ms",
            `p99 minus the ${GEN_MS} ms generation`,
            "answers",
          ],
          rows: burstRows,
        },
        {
          header: [
            ...LEAD("late arrivals, latency"),
            "N",
            "succeeded",
            "max ms",
            `p99 minus the ${GEN_MS} ms generation`,
            "answers",
          ],
          rows: lateRows,
        },
      ],
      notes: [
        "Burst rows: p50/p99 are each success's completion after the backend became ready (coldfront), or after it was sent (direct). Late rows: each request's own latency, from sending to its answer; req/s is late successes per second of arrivals.",
        "A late arrival that queued behind the held backlog shows as late latency well above direct's (with a release counting whole generations, about N / release.concurrency x the generation time).",
      ],
    },
    checks,
  };
}
