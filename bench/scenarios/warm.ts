/**
 * Scenarios 1 and 2a: the warm path under wrk (or autocannon) at concurrency 50, every system in front of
 * the same backend, runs interleaved (A B C A B C ...) so that a noisy neighbour hits every
 * system alike, medians of the runs.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type LoadResult, runLoad } from "../lib/load.js";
import { cpuSeconds, rssBytes, startRssSampler } from "../lib/proc-stats.js";
import { type Check, type Context, LEAD, nodeFloor, type ScenarioResult, vsNginx } from "../lib/report.js";
import { fmt, fmtMs, median, ratio } from "../lib/stats.js";
import { nodePipeNote, type System, type SystemName } from "../lib/systems.js";

const CONNECTIONS = 50;

export const CHAT_BODY = JSON.stringify({
  model: "bench-model",
  max_tokens: 16,
  messages: [{ role: "user", content: "Hello! Say hi back in one short sentence." }],
});

export const STREAM_BODY = JSON.stringify({
  model: "bench-model",
  stream: true,
  max_tokens: 50,
  messages: [{ role: "user", content: "Hello! Say hi back in one short sentence." }],
});

interface Run {
  readonly load: LoadResult;
  /** Proxy CPU ms per 1,000 requests; NaN for direct. */
  readonly cpuPer1k: number;
  /** Proxy RSS, bytes, the peak of samples every 250 ms during the run; NaN for direct. */
  readonly rssLoad: number;
}

export interface Medians {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly mbps: number;
  readonly cpuPer1k: number;
  /** RSS 1 s after the system's warm-up, idle. */
  readonly rssIdle: number;
  /** Median over the runs of each run's peak RSS. */
  readonly rssLoad: number;
  readonly errors: number;
  readonly runs: number;
}

/** Interleaved runs of one body against every system; the medians per system. */
async function interleaved(
  ctx: Context,
  label: string,
  systems: readonly System[],
  body: string,
): Promise<Map<SystemName, Medians>> {
  const runs = ctx.quick ? 1 : 3;
  const seconds = ctx.quick ? 3 : 10;
  const warmup = ctx.quick ? 1 : 3;
  const load = (s: System, secs: number) =>
    runLoad({
      url: `${s.url}/v1/chat/completions`,
      connections: CONNECTIONS,
      seconds: secs,
      body,
      generator: ctx.generator,
      dir: ctx.ws.dir,
    });
  const out = new Map<SystemName, Run[]>(systems.map((s) => [s.name, []]));
  const idle = new Map<SystemName, number>();
  for (const s of systems) {
    ctx.log(`${label}: warm-up ${s.name} (${warmup} s)`);
    await load(s, warmup);
    // Idle after warm-up: what the proxy keeps once the load has passed.
    await sleep(1000);
    idle.set(s.name, s.pids().length === 0 ? Number.NaN : rssBytes(s.pids()));
  }
  for (let r = 0; r < runs; r++) {
    for (const s of systems) {
      ctx.log(`${label}: run ${r + 1}/${runs} ${s.name} (${seconds} s)`);
      const pids = s.pids();
      const cpu0 = cpuSeconds(pids);
      const rss = startRssSampler(() => s.pids());
      const result = await load(s, seconds);
      const cpu = cpuSeconds(s.pids()) - cpu0;
      const { peak } = rss.stop();
      out.get(s.name)?.push({
        load: result,
        cpuPer1k: pids.length === 0 ? Number.NaN : (cpu * 1000 * 1000) / Math.max(1, result.requests),
        rssLoad: pids.length === 0 ? Number.NaN : peak,
      });
      // Let the last connections close and the kernel settle between systems.
      await sleep(300);
    }
  }
  const medians = new Map<SystemName, Medians>();
  for (const [name, list] of out) {
    medians.set(name, {
      rps: median(list.map((x) => x.load.rps)),
      p50: median(list.map((x) => x.load.p50)),
      p99: median(list.map((x) => x.load.p99)),
      mbps: median(list.map((x) => x.load.bytesPerSec / 1e6)),
      cpuPer1k: median(list.map((x) => x.cpuPer1k)),
      rssIdle: idle.get(name) ?? Number.NaN,
      rssLoad: median(list.map((x) => x.rssLoad)),
      errors: list.reduce((sum, x) => sum + x.load.errors, 0),
      runs: list.length,
    });
  }
  return medians;
}

const mb = (bytes: number | undefined) => (bytes === undefined ? Number.NaN : bytes / 2 ** 20);

/** The RSS goals (bench/README.md "Goals"), from one warm scenario's coldfront row (node-pipe's idle RSS beside it). */
function rssChecks(scenario: string, cf: Medians | undefined, pipe: Medians | undefined): Check[] {
  return [
    {
      source: "issue 13",
      target: `coldfront RSS idle after warm-up (${scenario})`,
      goal: "<= 80 MB",
      measured: cf
        ? `${fmt(mb(cf.rssIdle), 0)} MB${nodeFloor(pipe && Number.isFinite(pipe.rssIdle) ? `${fmt(mb(pipe.rssIdle), 0)} MB` : undefined)}`
        : "—",
      met: cf && Number.isFinite(cf.rssIdle) ? mb(cf.rssIdle) <= 80 : undefined,
    },
    {
      source: "issue 13",
      target: `coldfront RSS under load (${scenario})`,
      goal: "<= 120 MB",
      measured: cf ? `${fmt(mb(cf.rssLoad), 0)} MB` : "—",
      met: cf && Number.isFinite(cf.rssLoad) ? mb(cf.rssLoad) <= 120 : undefined,
    },
  ];
}

/** Latency for a table at the generator's resolution. */
function lat(ctx: Context, x: number | undefined): string {
  return ctx.generator === "wrk" ? fmt(x, 2) : fmtMs(x);
}

function runsNote(ctx: Context): string {
  const gen =
    ctx.generator === "wrk"
      ? "Load from wrk (one thread, 50 connections; latencies to 10 µs)."
      : "Load from autocannon (50 connections; latencies at 1 ms resolution, `<1` is under 1 ms).";
  const runs = ctx.quick
    ? "Quick mode: one 3 s run per system after a 1 s warm-up; numbers are indicative only."
    : "Medians of 3 interleaved 10 s runs per system, each system warmed up for 3 s first.";
  return `${gen} ${runs} RSS idle is read 1 s after the system's warm-up; RSS under load is the peak of samples every 250 ms during a run (median over runs), both over the whole process tree.`;
}

export async function warmNonStreaming(ctx: Context, systems: readonly System[]): Promise<ScenarioResult> {
  const m = await interleaved(ctx, "warm", systems, CHAT_BODY);
  const direct = m.get("direct");
  const nginx = m.get("nginx");
  const rows = systems.map((s) => {
    const x = m.get(s.name) as Medians;
    return [
      s.name,
      fmt(x.rps),
      lat(ctx, x.p50),
      lat(ctx, x.p99),
      ratio(x.rps, direct?.rps),
      ratio(x.rps, nginx?.rps),
      ratio(x.p99, nginx?.p99),
      fmt(x.cpuPer1k, 1),
      ratio(x.cpuPer1k, nginx?.cpuPer1k),
      fmt(mb(x.rssIdle), 0),
      fmt(mb(x.rssLoad), 0),
      fmt(x.errors),
    ];
  });
  const cf = m.get("coldfront");
  const pipe = m.get("node-pipe");
  const fastify = m.get("@fastify/http-proxy");
  const checks: Check[] = [
    vsNginx(
      {
        source: "issue 13",
        target: "warm JSON: proxy CPU per request vs nginx",
        goal: "<= 2.0x",
        factor: 2,
        unit: "ms / 1k",
      },
      (x) => x.cpuPer1k,
      (x) => fmt(x.cpuPer1k, 1),
      { cf, nginx, pipe },
    ),
    vsNginx(
      { source: "issues 13, 7", target: "warm p99 vs nginx", goal: "<= 1.5x", factor: 1.5, unit: "ms" },
      (x) => x.p99,
      (x) => lat(ctx, x.p99),
      { cf, nginx, pipe },
    ),
    ...rssChecks("warm JSON", cf, pipe),
    {
      source: "issue 7",
      target: "warm req/s vs nginx",
      goal: ">= 0.75x",
      measured: ratio(cf?.rps, nginx?.rps),
      met: cf && nginx ? cf.rps >= 0.75 * nginx.rps : undefined,
    },
    {
      source: "issue 7",
      target: "warm req/s vs @fastify/http-proxy",
      goal: ">= 2x",
      measured: ratio(cf?.rps, fastify?.rps),
      met: cf && fastify ? cf.rps >= 2 * fastify.rps : undefined,
    },
  ];
  return {
    section: {
      title: "1. Warm non-streaming",
      about:
        "A small chat completion (JSON POST, ~130 B in, ~330 B out) at concurrency 50 (50 keep-alive connections), every system in front of the same backend. CPU is the proxy process tree's time on CPU (user and system) from /proc over the run, per 1,000 completed requests.",
      tables: [
        {
          header: [
            ...LEAD(""),
            "p99 vs nginx",
            "proxy CPU ms / 1k req",
            "CPU vs nginx",
            "RSS MB idle",
            "RSS MB under load",
            "errors",
          ],
          rows,
        },
      ],
      notes: [runsNote(ctx), ...nodePipeNote(systems)],
    },
    checks,
  };
}

export async function warmStreaming(ctx: Context, systems: readonly System[]): Promise<ScenarioResult> {
  const m = await interleaved(ctx, "stream", systems, STREAM_BODY);
  const direct = m.get("direct");
  const nginx = m.get("nginx");
  const rows = systems.map((s) => {
    const x = m.get(s.name) as Medians;
    return [
      s.name,
      fmt(x.rps),
      lat(ctx, x.p50),
      lat(ctx, x.p99),
      ratio(x.rps, direct?.rps),
      ratio(x.rps, nginx?.rps),
      fmt(x.mbps, 1),
      ratio(x.mbps, nginx?.mbps),
      fmt(x.cpuPer1k, 0),
      ratio(x.cpuPer1k, nginx?.cpuPer1k),
      fmt(mb(x.rssIdle), 0),
      fmt(mb(x.rssLoad), 0),
      fmt(x.errors),
    ];
  });
  const cf = m.get("coldfront");
  const pipe = m.get("node-pipe");
  return {
    section: {
      title: "2a. Warm streaming: relay throughput",
      about:
        'Streaming chat completions (`"stream": true`) at concurrency 50: each response is 50 SSE chunks of ~200 B plus `[DONE]`, written back to back by the backend. req/s counts whole streams; p50/p99 are whole-stream times; MB/s is response bytes (headers and body) per second at the client.',
      tables: [
        {
          header: [
            ...LEAD("whole stream"),
            "MB/s",
            "MB/s vs nginx",
            "proxy CPU ms / 1k streams",
            "CPU vs nginx",
            "RSS MB idle",
            "RSS MB under load",
            "errors",
          ],
          rows,
        },
      ],
      notes: [runsNote(ctx), ...nodePipeNote(systems)],
    },
    checks: [
      vsNginx(
        {
          source: "issue 13",
          target: "SSE burst (2a): proxy CPU per stream vs nginx",
          goal: "<= 1.52x (issue 13's figure: no regression)",
          factor: 1.52,
          unit: "ms / 1k",
        },
        (x) => x.cpuPer1k,
        (x) => fmt(x.cpuPer1k, 0),
        { cf, nginx, pipe },
      ),
      ...rssChecks("streaming", cf, pipe),
      {
        source: "issue 7",
        target: "streaming relay MB/s vs nginx",
        goal: ">= 0.9x",
        measured: ratio(cf?.mbps, nginx?.mbps),
        met: cf && nginx ? cf.mbps >= 0.9 * nginx.mbps : undefined,
      },
    ],
  };
}
