/**
 * Scenarios 1 and 2a: the warm path under autocannon at concurrency 50, every system in front of
 * the same backend, runs interleaved (A B C A B C ...) so that a noisy neighbour hits every
 * system alike, medians of the runs.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type LoadResult, runLoad } from "../lib/load.js";
import { cpuSeconds, rssBytes } from "../lib/proc-stats.js";
import { type Check, type Context, LEAD, type ScenarioResult } from "../lib/report.js";
import { fmt, fmtMs, median, ratio } from "../lib/stats.js";
import type { System, SystemName } from "../lib/systems.js";

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
  /** Proxy RSS after the run, bytes; NaN for direct. */
  readonly rss: number;
}

export interface Medians {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly mbps: number;
  readonly cpuPer1k: number;
  readonly rss: number;
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
  const out = new Map<SystemName, Run[]>(systems.map((s) => [s.name, []]));
  for (const s of systems) {
    ctx.log(`${label}: warm-up ${s.name} (${warmup} s)`);
    await runLoad({ url: `${s.url}/v1/chat/completions`, connections: CONNECTIONS, seconds: warmup, body });
  }
  for (let r = 0; r < runs; r++) {
    for (const s of systems) {
      ctx.log(`${label}: run ${r + 1}/${runs} ${s.name} (${seconds} s)`);
      const pids = s.pids();
      const cpu0 = cpuSeconds(pids);
      const load = await runLoad({
        url: `${s.url}/v1/chat/completions`,
        connections: CONNECTIONS,
        seconds,
        body,
      });
      const cpu = cpuSeconds(s.pids()) - cpu0;
      out.get(s.name)?.push({
        load,
        cpuPer1k: pids.length === 0 ? Number.NaN : (cpu * 1000 * 1000) / Math.max(1, load.requests),
        rss: pids.length === 0 ? Number.NaN : rssBytes(s.pids()),
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
      rss: median(list.map((x) => x.rss)),
      errors: list.reduce((sum, x) => sum + x.load.errors, 0),
      runs: list.length,
    });
  }
  return medians;
}

function runsNote(ctx: Context): string {
  return ctx.quick
    ? "Quick mode: one 3 s run per system after a 1 s warm-up; numbers are indicative only."
    : "Medians of 3 interleaved 10 s runs per system, each system warmed up for 3 s first.";
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
      fmtMs(x.p50),
      fmtMs(x.p99),
      ratio(x.rps, direct?.rps),
      ratio(x.rps, nginx?.rps),
      ratio(x.p99, nginx?.p99),
      fmt(x.cpuPer1k, 0),
      fmt(x.rss / 2 ** 20, 0),
      fmt(x.errors),
    ];
  });
  const cf = m.get("coldfront");
  const fastify = m.get("@fastify/http-proxy");
  const checks: Check[] = [
    {
      target: "warm req/s vs nginx",
      goal: ">= 0.75x",
      measured: ratio(cf?.rps, nginx?.rps),
      met: cf && nginx ? cf.rps >= 0.75 * nginx.rps : undefined,
    },
    {
      target: "warm req/s vs @fastify/http-proxy",
      goal: ">= 2x",
      measured: ratio(cf?.rps, fastify?.rps),
      met: cf && fastify ? cf.rps >= 2 * fastify.rps : undefined,
    },
    {
      target: "warm p99 vs nginx",
      goal: "<= 1.5x",
      measured: ratio(cf?.p99, nginx?.p99),
      met: cf && nginx ? cf.p99 <= 1.5 * nginx.p99 : undefined,
    },
  ];
  return {
    section: {
      title: "1. Warm non-streaming",
      about:
        "A small chat completion (JSON POST, ~130 B in, ~330 B out) at concurrency 50 (autocannon, 50 keep-alive connections), every system in front of the same backend. CPU is the proxy process tree's user+system time from /proc over the run; RSS is read after the run.",
      tables: [
        {
          header: [...LEAD(""), "p99 vs nginx", "proxy CPU ms / 1k req", "proxy RSS MB", "errors"],
          rows,
        },
      ],
      notes: [runsNote(ctx)],
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
      fmtMs(x.p50),
      fmtMs(x.p99),
      ratio(x.rps, direct?.rps),
      ratio(x.rps, nginx?.rps),
      fmt(x.mbps, 1),
      ratio(x.mbps, nginx?.mbps),
      fmt(x.cpuPer1k, 0),
      fmt(x.errors),
    ];
  });
  const cf = m.get("coldfront");
  return {
    section: {
      title: "2a. Warm streaming: relay throughput",
      about:
        'Streaming chat completions (`"stream": true`) at concurrency 50: each response is 50 SSE chunks of ~200 B plus `[DONE]`, written back to back by the backend. req/s counts whole streams; p50/p99 are whole-stream times; MB/s is response bytes (headers and body) per second at the client.',
      tables: [
        {
          header: [...LEAD("whole stream"), "MB/s", "MB/s vs nginx", "proxy CPU ms / 1k streams", "errors"],
          rows,
        },
      ],
      notes: [runsNote(ctx)],
    },
    checks: [
      {
        target: "streaming relay MB/s vs nginx",
        goal: ">= 0.9x",
        measured: ratio(cf?.mbps, nginx?.mbps),
        met: cf && nginx ? cf.mbps >= 0.9 * nginx.mbps : undefined,
      },
    ],
  };
}
