/**
 * Scenario 2c (`--only paced-1k`): what a proxy spends per streamed chunk in the shape that
 * matters for LLM serving, many concurrent streams each getting a small chunk every 20 ms
 * (bench/README.md "Goals": paced streams). Two shapes, 50 and 1,000 concurrent streams of 100 chunks, runs interleaved across
 * systems; the proxy's CPU time (the whole process tree, over the measured rounds only) per
 * stream and per chunk, its peak RSS, and the load side's CPU, which says whether the client and
 * the backend kept the pace.
 */
import { type PacedMeasure, pacedMeasure } from "../lib/paced.js";
import { currentPinning } from "../lib/procs.js";
import { type Check, type Context, LEAD, type ScenarioResult, type Table, vsNginx } from "../lib/report.js";
import { fmt, median, percentile, ratio } from "../lib/stats.js";
import { nodePipeNote, type System, type SystemName } from "../lib/systems.js";

const ITL_MS = 20;
const LOAD_CORES = () => {
  const p = currentPinning();
  return p ? `CPU ${p.load}, where they run pinned` : "the machine's cores, shared with the proxy";
};
const CHUNKS = 100;

interface Shape {
  readonly streams: number;
  readonly rounds: number;
}

interface Summary {
  readonly rps: number;
  readonly fb50: number;
  readonly fb99: number;
  readonly cpuPerStream: number;
  readonly usPerChunk: number;
  readonly busy: number;
  readonly rss: number;
  readonly wall50: number;
  readonly gapMedian: number;
  readonly loadBusy: number;
  readonly complete: string;
  readonly errors: number;
}

function summarize(runs: readonly PacedMeasure[], shape: Shape): Summary {
  const reports = runs.map((r) => r.report);
  const streams = reports.reduce((n, x) => n + x.firstByte.length, 0);
  // Runs in which no stream completed say nothing about CPU per stream.
  const perRun = (f: (m: PacedMeasure) => number) =>
    median(runs.filter((m) => m.report.duration.length > 0).map(f));
  const measured = (m: PacedMeasure) => m.report.duration.length;
  const firstByte = reports.flatMap((x) => x.firstByte);
  return {
    rps: perRun((m) => m.report.firstByte.length / (m.report.elapsedMs / 1000)),
    fb50: median(firstByte),
    fb99: percentile(firstByte, 99),
    cpuPerStream: perRun((m) => m.cpuMs / measured(m)),
    usPerChunk: perRun((m) => (m.cpuMs * 1000) / (measured(m) * CHUNKS)),
    busy: perRun((m) => (m.cpuMs / m.wallMs) * 100),
    rss: perRun((m) => m.rssPeak),
    wall50: median(reports.flatMap((x) => x.duration)),
    gapMedian: median(reports.flatMap((x) => x.maxGap)),
    loadBusy: perRun((m) => (m.loadCpuMs / m.wallMs) * 100),
    complete: `${reports.flatMap((x) => x.events).filter((n) => n === CHUNKS + 1).length}/${streams || shape.streams * shape.rounds * runs.length}`,
    errors: reports.reduce((n, x) => n + x.errors, 0),
  };
}

export async function pacedCpu(
  ctx: Context,
  systems: readonly System[],
  backendPid: number,
): Promise<ScenarioResult> {
  const runs = ctx.quick ? 1 : 3;
  // 50 streams x 100 chunks is 2 s of work per round: several rounds per run for enough CPU time.
  const shapes: Shape[] = [
    { streams: 50, rounds: ctx.quick ? 2 : 3 },
    { streams: 1000, rounds: 1 },
  ];
  const tables: Table[] = [];
  const checks: Check[] = [];
  const notes: string[] = [];
  for (const shape of shapes) {
    const all = new Map<SystemName, PacedMeasure[]>(systems.map((s) => [s.name, []]));
    for (let r = 0; r < runs; r++) {
      for (const s of systems) {
        ctx.log(`paced-1k: ${shape.streams} streams, run ${r + 1}/${runs} ${s.name}`);
        const m = await pacedMeasure(
          ctx,
          s,
          { streams: shape.streams, rounds: shape.rounds, chunks: CHUNKS, itl: ITL_MS },
          backendPid,
          `${shape.streams}-${r}`,
        );
        all.get(s.name)?.push(m);
      }
    }
    const sum = new Map([...all].map(([name, list]) => [name, summarize(list, shape)] as const));
    const direct = sum.get("direct");
    const nginx = sum.get("nginx");
    tables.push({
      header: [
        ...LEAD(`first byte, ${shape.streams} streams`),
        "proxy CPU ms / stream",
        "proxy CPU µs / chunk",
        "CPU vs nginx",
        "proxy core busy %",
        "proxy RSS MB (peak)",
        "stream ms p50",
        "largest gap ms (median)",
        "load side CPU %",
        "streams complete",
        "errors",
      ],
      rows: systems.map((s) => {
        const x = sum.get(s.name) as Summary;
        return [
          s.name,
          fmt(x.rps, 1),
          fmt(x.fb50, 1),
          fmt(x.fb99, 1),
          ratio(x.rps, direct?.rps),
          ratio(x.rps, nginx?.rps),
          fmt(x.cpuPerStream, 2),
          fmt(x.usPerChunk, 1),
          ratio(x.cpuPerStream, nginx?.cpuPerStream),
          fmt(x.busy, 0),
          fmt(x.rss / 2 ** 20, 0),
          fmt(x.wall50, 0),
          fmt(x.gapMedian, 1),
          fmt(x.loadBusy, 0),
          x.complete,
          fmt(x.errors),
        ];
      }),
    });
    const cf = sum.get("coldfront");
    checks.push(
      vsNginx(
        {
          source: "issue 13",
          target: `paced streams (${fmt(shape.streams)} x ${CHUNKS} chunks at ${ITL_MS} ms): proxy CPU per stream vs nginx`,
          goal: "<= 1.5x",
          factor: 1.5,
          unit: "µs / chunk",
        },
        (x) => x.cpuPerStream,
        (x) => fmt(x.usPerChunk, 1),
        { cf, nginx, pipe: sum.get("node-pipe") },
      ),
    );
    if (direct && direct.wall50 > CHUNKS * ITL_MS * 1.1) {
      notes.push(
        `${fmt(shape.streams)} streams: even direct streams took ${fmt(direct.wall50, 0)} ms (p50) against ${CHUNKS * ITL_MS} ms of pacing: the load side (client and backend, ${fmt(direct.loadBusy, 0)}% of ${LOAD_CORES()}) could not offer ${fmt((shape.streams * 1000) / ITL_MS)} chunks/s, so every system was offered fewer per second than the shape asks for. CPU per chunk still counts every chunk relayed; a proxy near 100% busy also coalesces reads, which lowers its figure. This shape needs 3 cores or more (the proxy's, plus one each for the client and the backend) to hold its pacing.`,
      );
    }
  }
  return {
    section: {
      title: "2c. Paced streams at scale: CPU per chunk",
      about: `50 and then 1,000 concurrent streams of ${CHUNKS} chunks (~200 B each, plus \`[DONE]\`), one chunk every ${ITL_MS} ms from the backend (\`x-bench-itl-ms\`), read by one lean undici client process (one connection per stream). ${runs} interleaved run(s) per system and shape, medians; a 50-stream run is ${shapes[0]?.rounds} rounds back to back. CPU is the proxy process tree's time on CPU over the measured rounds only (an unmeasured warm-up round opens the connections first); per chunk = per stream / ${CHUNKS}, so it includes each stream's request and response head. "proxy core busy %" is that CPU over the wall time; "load side CPU %" is the client's and the backend's together over the same window (with --pin they share one core, so near 100% means the load side, not the proxy, set the pace). req/s is streams per second, set by the pacing. Reproduce just this: \`npm run bench -- --only paced-1k\`.`,
      tables,
      notes: [
        ...notes,
        ...nodePipeNote(systems),
        "@fastify/http-proxy runs with its defaults, whose undici pool opens at most 128 upstream connections: beyond that its streams queue, which shows in its stream time, not in its CPU per chunk.",
      ],
    },
    checks,
  };
}
