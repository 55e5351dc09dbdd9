/**
 * Scenario 4: what holding costs. N requests with 1 KB bodies are held by coldfront (backend
 * down); then the backend starts and all of them are released. RSS is coldfront's own, from
 * /proc, idle versus all held; event-loop delay comes from coldfront's /metrics (prom-client's
 * default nodejs_eventloop_lag_* series, whose percentiles cover the time since the previous
 * scrape), once for the arrival and hold, once for the release.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { metricValue, scrape, targetCounts } from "../lib/admin.js";
import { outcomeSummary, startBurst } from "../lib/burst.js";
import { openFilesLimit, rssBytes } from "../lib/proc-stats.js";
import { freePort, poll } from "../lib/procs.js";
import { type Check, type Context, LEAD, type ScenarioResult } from "../lib/report.js";
import { fmt, max, percentile } from "../lib/stats.js";
import { type Backend, type Coldfront, startBackend, startColdfront } from "../lib/systems.js";
import { coldConfig } from "./cold-burst.js";

const BODY_BYTES = 1024;
/** File descriptors a process needs beyond its held connections. */
const FD_MARGIN = 512;

interface HoldRun {
  n: number;
  idleRss: number;
  heldRss: number;
  idleHeap: number;
  heldHeap: number;
  idleHeapTotal: number;
  heldHeapTotal: number;
  arrivalMs: number;
  holdLagP99: number;
  holdLagMax: number;
  releaseLagP99: number;
  releaseLagMax: number;
  addedP50: number;
  addedP99: number;
  releaseAll: number;
  succeeded: number;
  answers: string;
}

const lagMs = (text: string, q: "p99" | "max") =>
  metricValue(text, `nodejs_eventloop_lag_${q}_seconds`) * 1000;

async function holdRun(ctx: Context, n: number): Promise<HoldRun> {
  const port = await freePort();
  const upstream = `http://127.0.0.1:${port}`;
  let cf: Coldfront | undefined;
  let backend: Backend | undefined;
  try {
    cf = await startColdfront(ctx.ws, coldConfig(upstream, n, `hold-${n}`));
    const pid = cf.child.pid;
    await sleep(1000);
    const idleRss = rssBytes([pid]);
    const idleMetrics = await scrape(cf.adminUrl);
    ctx.log(`hold: ${n} held requests of ${BODY_BYTES} B`);
    const start = performance.now();
    const client = startBurst(ctx.ws, { url: cf.url, n, bodyBytes: BODY_BYTES, timeoutMs: 300_000 });
    const adminUrl = cf.adminUrl;
    await poll(
      `${n} held requests`,
      async () => {
        if (!client.child.running) throw new Error(`burst client ended early: ${client.child.describe()}`);
        const c = await targetCounts(adminUrl, "model");
        return c && c.pending >= n ? true : undefined;
      },
      120_000,
      100,
    );
    const arrivalMs = performance.now() - start;
    // Let allocation settle before reading memory.
    await sleep(1000);
    const heldRss = rssBytes([pid]);
    const heldMetrics = await scrape(cf.adminUrl);
    backend = await startBackend(ctx.ws, 0, port);
    const readyAt = await backend.readyAt();
    const o = await client.result();
    const releaseMetrics = await scrape(cf.adminUrl);
    const ok = o.status.map((s, i) => (s === 200 ? i : -1)).filter((i) => i >= 0);
    const added = ok.map((i) => (o.done[i] as number) - readyAt);
    return {
      n,
      idleRss,
      heldRss,
      idleHeap: metricValue(idleMetrics, "nodejs_heap_size_used_bytes"),
      heldHeap: metricValue(heldMetrics, "nodejs_heap_size_used_bytes"),
      idleHeapTotal: metricValue(idleMetrics, "nodejs_heap_size_total_bytes"),
      heldHeapTotal: metricValue(heldMetrics, "nodejs_heap_size_total_bytes"),
      arrivalMs,
      holdLagP99: lagMs(heldMetrics, "p99"),
      holdLagMax: lagMs(heldMetrics, "max"),
      releaseLagP99: lagMs(releaseMetrics, "p99"),
      releaseLagMax: lagMs(releaseMetrics, "max"),
      addedP50: percentile(added, 50),
      addedP99: percentile(added, 99),
      releaseAll: added.length > 0 ? max(added) : Number.NaN,
      succeeded: ok.length,
      answers: outcomeSummary(o),
    };
  } finally {
    await backend?.stop();
    await cf?.stop();
  }
}

export async function holdCapacity(ctx: Context): Promise<ScenarioResult> {
  const limit = openFilesLimit();
  const cap = limit.hard - FD_MARGIN;
  const wanted = ctx.held ?? (ctx.quick ? [1000] : [1000, 10_000]);
  const sizes = wanted.map((n) => Math.min(n, cap));
  const notes = [
    `Open-files limit: soft ${limit.soft}, hard ${limit.hard}; every child runs with its soft limit raised to the hard one.`,
    "Event-loop delay is prom-client's monitorEventLoopDelay (10 ms sampling resolution), so an idle loop reads about 10 ms; the hold column covers the connections arriving and being held, the release column the replay of all of them.",
    "RSS per held request is (RSS with all held - idle RSS) / N, both read from /proc/<pid>/status. It includes the V8 heap as committed, not as used: under a burst of arrivals V8 grows its young generation (its new space reached 128 MiB under load on this machine), which `--max-semi-space-size` bounds. Heap used and committed come from coldfront's /metrics. A fixed cost (memory the allocator keeps after the arrival burst, compiled code) is spread over N, so the per-held figure at 1,000 is well above the one at 10,000, where the target is set.",
  ];
  if (sizes.some((n, i) => n !== wanted[i])) {
    notes.push(`The open-files limit capped the burst at ${cap} held requests.`);
  }
  const runs: HoldRun[] = [];
  for (const n of sizes) runs.push(await holdRun(ctx, n));
  const rows = runs.map((r) => [
    "coldfront",
    fmt(r.succeeded / (r.releaseAll / 1000)),
    fmt(r.addedP50),
    fmt(r.addedP99),
    "—",
    "—",
    fmt(r.n),
    fmt(r.idleRss / 2 ** 20, 1),
    fmt(r.heldRss / 2 ** 20, 1),
    fmt((r.heldRss - r.idleRss) / r.n / 1024, 1),
    fmt((r.heldHeap - r.idleHeap) / r.n / 1024, 1),
    fmt((r.heldHeapTotal - r.idleHeapTotal) / r.n / 1024, 1),
    fmt(r.arrivalMs),
    `${fmt(r.holdLagP99, 1)} / ${fmt(r.holdLagMax, 1)}`,
    `${fmt(r.releaseLagP99, 1)} / ${fmt(r.releaseLagMax, 1)}`,
    fmt(r.releaseAll),
    r.answers,
  ]);
  const big = runs.at(-1);
  const perHeldKb = big ? (big.heldRss - big.idleRss) / big.n / 1024 : Number.NaN;
  const checks: Check[] = [
    {
      source: "issues 13, 7",
      target: `held requests: RSS each above idle${big && big.n !== 10_000 ? ` (N=${big.n} in this run)` : ""}`,
      goal: "<= 10 KB at 10,000, loop delay reported",
      measured: big
        ? `${perHeldKb.toFixed(1)} KB; loop delay p99 / max ${fmt(big.holdLagP99, 1)} / ${fmt(big.holdLagMax, 1)} ms arriving, ${fmt(big.releaseLagP99, 1)} / ${fmt(big.releaseLagMax, 1)} ms releasing`
        : "—",
      // A fixed cost (allocator arenas, code, the young generation) is spread over N: only
      // the 10,000 burst says what the target means.
      met: big && big.n === 10_000 ? perHeldKb <= 10 : undefined,
    },
  ];
  return {
    section: {
      title: "4. Hold capacity",
      about: `N requests with ${BODY_BYTES} B bodies, one connection each, held by coldfront while the backend is down; once all are held the backend starts and they are released (release.concurrency 64). req/s is the release rate; p50/p99 are each request's completion after the backend became ready.`,
      tables: [
        {
          header: [
            ...LEAD("after ready"),
            "held",
            "idle RSS MB",
            "held RSS MB",
            "RSS KB / held",
            "heap used KB / held",
            "heap committed KB / held",
            "all held after ms",
            "loop delay p99 / max ms (holding)",
            "loop delay p99 / max ms (release)",
            "release all ms",
            "answers",
          ],
          rows,
        },
      ],
      notes,
    },
    checks,
  };
}
