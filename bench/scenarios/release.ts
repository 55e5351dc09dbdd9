/**
 * Release at the backend's capacity (README "Release after a cold start"): N requests are held
 * while the backend is down, then it starts as a backend of fixed capacity that resets every
 * connection past its limit before any response head (backend.ts --capacity), with a short
 * generation per request. coldfront at its defaults (release.concurrency 64, initialWindow 8,
 * maxInFlight 1024, retries 2) must complete every one of them.
 *
 * Reported: completions and failures, the time from ready until the last answer, the resets the
 * backend made (each a replay put back), and the event loop's longest stall during the release
 * (prom-client's nodejs_eventloop_lag_max_seconds since the previous scrape), against the same
 * burst held and released by the node:http hold floor in the same run.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { metricValue, scrape } from "../lib/admin.js";
import { outcomeSummary, startBurst, waitAllHeld } from "../lib/burst.js";
import { openFilesLimit } from "../lib/proc-stats.js";
import { freePort } from "../lib/procs.js";
import { type Check, type Context, LEAD, type ScenarioResult } from "../lib/report.js";
import { fmt, max, percentile } from "../lib/stats.js";
import { type Backend, type Coldfront, startBackend, startColdfront } from "../lib/systems.js";
import { coldConfig } from "./cold-burst.js";
import { floorRun } from "./hold.js";

const BODY_BYTES = 1024;
const FD_MARGIN = 512;
/** The backend's capacity: POSTs in progress past which it resets the connection. */
const CAPACITY = 32;
/** Each request's generation, ms (x-bench-gen-ms): long enough for the capacity to fill. */
const GEN_MS = 20;

interface ReleaseRun {
  n: number;
  succeeded: number;
  failed: number;
  answers: string;
  drainMs: number;
  p50: number;
  p99: number;
  resets: number;
  retries: number;
  stallMs: number;
  lagP99Ms: number;
}

/** A labelled series' value in a Prometheus text exposition. */
function series(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function coldfrontRelease(ctx: Context, n: number): Promise<ReleaseRun> {
  const port = await freePort();
  const upstream = `http://127.0.0.1:${port}`;
  let cf: Coldfront | undefined;
  let backend: Backend | undefined;
  try {
    cf = await startColdfront(ctx.ws, coldConfig(upstream, n, `release-${n}`));
    await sleep(500);
    ctx.log(`release: ${n} held, then a backend of capacity ${CAPACITY} (${GEN_MS} ms generations)`);
    const client = startBurst(ctx.ws, {
      url: cf.url,
      n,
      bodyBytes: BODY_BYTES,
      genMs: GEN_MS,
      timeoutMs: 600_000,
      tag: `release-${n}`,
    });
    const adminUrl = cf.adminUrl;
    await waitAllHeld(client, adminUrl, "model", n);
    await sleep(500);
    // Starts the loop-delay period that the release's scrape reads.
    await scrape(adminUrl);
    backend = await startBackend(ctx.ws, 0, port, CAPACITY);
    const readyAt = await backend.readyAt();
    const o = await client.result();
    const metrics = await scrape(adminUrl);
    const stopped = backend.child.waitMessage<{ resets: number }>((m) => m.event === "stopped", 10_000);
    await backend.stop();
    const resets = (await stopped.catch(() => ({ resets: Number.NaN }))).resets;
    backend = undefined;
    const ok = o.status.map((s, i) => (s === 200 ? i : -1)).filter((i) => i >= 0);
    const added = ok.map((i) => (o.done[i] as number) - readyAt);
    return {
      n,
      succeeded: ok.length,
      failed: n - ok.length,
      answers: outcomeSummary(o),
      drainMs: added.length > 0 ? max(added) : Number.NaN,
      p50: percentile(added, 50),
      p99: percentile(added, 99),
      resets,
      retries: series(metrics, "coldfront_replay_retries_total", 'reason="connection_dropped"'),
      stallMs: metricValue(metrics, "nodejs_eventloop_lag_max_seconds") * 1000,
      lagP99Ms: metricValue(metrics, "nodejs_eventloop_lag_p99_seconds") * 1000,
    };
  } finally {
    await backend?.stop();
    await cf?.stop();
  }
}

export async function releaseAtCapacity(ctx: Context): Promise<ScenarioResult> {
  const limit = openFilesLimit();
  const wanted = ctx.quick ? 2000 : 10_000;
  const n = Math.min(wanted, limit.hard - FD_MARGIN);
  const notes = [
    `The backend resets a connection before any response head once ${CAPACITY} POSTs are in progress; each request's generation is ${GEN_MS} ms. coldfront runs at its release defaults.`,
    "Loop stall is prom-client's nodejs_eventloop_lag_max_seconds over the release (10 ms resolution); node:http hold's is its monitorEventLoopDelay max while it answers every held request at once with no backend (the hold table's floor).",
  ];
  if (n !== wanted) notes.push(`The open-files limit capped the burst at ${n} held requests.`);
  const run = await coldfrontRelease(ctx, n);
  let floorStall: number | undefined;
  try {
    floorStall = (await floorRun(ctx, n)).releaseLagMax;
  } catch (err) {
    notes.push(`node:http hold failed: \`${(err as Error).message.split("\n")[0]}\``);
  }
  const rows = [
    [
      "coldfront",
      fmt(run.succeeded / (run.drainMs / 1000)),
      fmt(run.p50),
      fmt(run.p99),
      "—",
      "—",
      fmt(run.n),
      fmt(run.succeeded),
      fmt(run.failed),
      fmt(run.drainMs),
      fmt(run.resets),
      fmt(run.retries),
      `${fmt(run.lagP99Ms, 1)} / ${fmt(run.stallMs, 1)}`,
      floorStall === undefined ? "—" : fmt(floorStall, 1),
      run.answers,
    ],
  ];
  const checks: Check[] = [
    {
      source: 'README "Release after a cold start"',
      target: `release of ${fmt(n)} held into a backend of capacity ${CAPACITY}`,
      goal: "0 failures; longest loop stall <= 2x node:http hold's",
      measured: `${fmt(run.failed)} failed of ${fmt(n)}, drained in ${fmt(run.drainMs)} ms; stall ${fmt(run.stallMs, 1)} ms vs ${floorStall === undefined ? "—" : fmt(floorStall, 1)} ms`,
      met: floorStall === undefined ? undefined : run.failed === 0 && run.stallMs <= 2 * floorStall,
    },
  ];
  return {
    section: {
      title: "7. Release at capacity",
      about: `${fmt(n)} requests with ${BODY_BYTES} B bodies held while the backend is down; then it starts with a capacity of ${CAPACITY} requests at once, resetting connections past it. req/s is the release rate; p50/p99 are each request's completion after the backend became ready.`,
      tables: [
        {
          header: [
            ...LEAD("after ready"),
            "held",
            "200",
            "failed",
            "drained after ms",
            "backend resets",
            "replays put back (dropped)",
            "loop delay p99 / max ms",
            "node:http hold max ms",
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
