/**
 * Runs clients/paced.js against one system and measures around its measured rounds only (the
 * client says when they start): the proxy's CPU time and RSS (sampled every 250 ms), and the
 * load side's CPU (the client and the backend), which tells whether the proxy or its drivers
 * set the pace.
 */
import { join } from "node:path";
import { benchScript } from "./paths.js";
import { cpuSeconds, rssBytes, startRssSampler } from "./proc-stats.js";
import { Child } from "./procs.js";
import type { Context } from "./report.js";
import type { System } from "./systems.js";

/** What clients/paced.js prints: one entry per measured stream. */
export interface PacedReport {
  readonly firstByte: number[];
  readonly maxGap: number[];
  readonly events: number[];
  readonly duration: number[];
  readonly elapsedMs: number;
  readonly errors: number;
}

export interface PacedShape {
  readonly streams: number;
  readonly rounds: number;
  readonly chunks: number;
  readonly itl: number;
}

export interface PacedMeasure {
  readonly report: PacedReport;
  /** Proxy CPU over the measured rounds, ms; NaN for direct. */
  readonly cpuMs: number;
  /** The client's and the backend's CPU over the same window, ms. */
  readonly loadCpuMs: number;
  /** Wall time of the measured rounds as the harness saw it, ms. */
  readonly wallMs: number;
  /** Peak RSS of the proxy during the measured rounds, bytes; NaN for direct. */
  readonly rssPeak: number;
}

export async function pacedMeasure(
  ctx: Context,
  s: System,
  shape: PacedShape,
  backendPid: number | undefined,
  tag: string,
): Promise<PacedMeasure> {
  const child = Child.spawn(
    "paced",
    process.execPath,
    [
      benchScript("clients/paced.js"),
      "--url",
      s.url,
      "--streams",
      String(shape.streams),
      "--rounds",
      String(shape.rounds),
      "--chunks",
      String(shape.chunks),
      "--itl",
      String(shape.itl),
    ],
    { logFile: join(ctx.ws.dir, `paced-${tag}.log`), role: "load" },
  );
  // Bounded by the pacing: a stream should take chunks x itl; allow a slow machine 10x that.
  const measuredBound = 60_000 + shape.rounds * shape.chunks * shape.itl * 10;
  try {
    await child.waitMessage((m) => m.event === "measuring", 120_000);
    const load = () => [child.pid, ...(backendPid ? [backendPid] : [])];
    const t0 = performance.now();
    const cpu0 = cpuSeconds(s.pids());
    const load0 = cpuSeconds(load());
    const rss = startRssSampler(() => s.pids());
    const report = await child.waitMessage<PacedReport>((m) => Array.isArray(m.firstByte), measuredBound);
    const cpu1 = cpuSeconds(s.pids());
    const load1 = cpuSeconds(load());
    const wallMs = performance.now() - t0;
    const { peak } = rss.stop();
    const code = await child.wait(15_000);
    if (code !== 0) throw new Error(`paced client failed: ${child.describe()}`);
    const proxied = s.pids().length > 0;
    return {
      report,
      cpuMs: proxied ? (cpu1 - cpu0) * 1000 : Number.NaN,
      loadCpuMs: (load1 - load0) * 1000,
      wallMs,
      rssPeak: proxied ? Math.max(peak, rssBytes(s.pids())) : Number.NaN,
    };
  } finally {
    await child.stop(1000);
  }
}
