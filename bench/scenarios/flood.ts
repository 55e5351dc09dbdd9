/**
 * Scenario 6 (bench/README.md "The scenarios", 6): a memory flood. 200 clients send max-size request bodies (the proxy's
 * maxBodyBytes) in a loop to a cold target whose port stays closed for the whole flood, for a
 * fixed time; then every client and proxy is stopped. coldfront (probe readiness, byte budget
 * `limits.maxHeldBytes` at its default) against @fastify/http-proxy (no budget, the same
 * bodyLimit). RSS of each is sampled every 250 ms; the clients report how each request ended.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { metricValue, scrape } from "../lib/admin.js";
import { type ColdfrontLimits, coldfrontLimits } from "../lib/coldfront-config.js";
import { benchScript } from "../lib/paths.js";
import { rssBytes } from "../lib/proc-stats.js";
import { Child, freePort } from "../lib/procs.js";
import { type Check, type Context, LEAD, type ScenarioResult } from "../lib/report.js";
import { fmt } from "../lib/stats.js";
import { type LineChart, lineChartSvg } from "../lib/svg.js";
import { isSkipped, type System, startColdfront, startSystem } from "../lib/systems.js";
import { coldConfig } from "./cold-burst.js";

const CLIENTS = 200;
const SAMPLE_MS = 250;
const MIB = 2 ** 20;

interface FloodReport {
  readonly outcomes: Record<string, number>;
  readonly p50: Record<string, number>;
  readonly started: number;
  readonly heldAtEnd: number;
}

interface Sample {
  /** ms since the flood started. */
  readonly at: number;
  readonly rss: number;
  /** coldfront_held_bytes, when the build has that gauge. */
  readonly held: number;
}

interface FloodRun {
  readonly system: string;
  readonly idleRss: number;
  readonly samples: readonly Sample[];
  readonly report: FloodReport;
}

async function floodThrough(
  ctx: Context,
  which: "coldfront" | "@fastify/http-proxy",
  limits: ColdfrontLimits,
  seconds: number,
): Promise<FloodRun | { system: string; skipped: string }> {
  // A port nobody listens on, for the whole flood: the target stays cold.
  const upstream = `http://127.0.0.1:${await freePort()}`;
  let sut: System | undefined;
  let adminUrl: string | undefined;
  let client: Child | undefined;
  try {
    if (which === "coldfront") {
      const base = coldConfig(upstream, 1000, "flood");
      const cf = await startColdfront(ctx.ws, {
        ...base,
        // Every default but the target's readiness; the byte budget passed explicitly at its
        // default so the results can say what it was, and only when the build knows the key.
        config: limits.maxHeldBytes === undefined ? {} : { limits: { maxHeldBytes: limits.maxHeldBytes } },
      });
      sut = cf;
      adminUrl = cf.adminUrl;
    } else {
      const s = await startSystem(ctx.ws, which, upstream, { bodyLimit: limits.maxBodyBytes });
      if (isSkipped(s)) return { system: which, skipped: s.skipped };
      sut = s;
    }
    await sleep(500);
    const idleRss = rssBytes(sut.pids());
    ctx.log(
      `flood: ${CLIENTS} clients x ${fmt(limits.maxBodyBytes / MIB, 0)} MiB bodies into ${which} for ${seconds} s`,
    );
    client = Child.spawn(
      "flood",
      process.execPath,
      [
        benchScript("clients/flood.js"),
        "--url",
        sut.url,
        "--clients",
        String(CLIENTS),
        "--body-bytes",
        String(limits.maxBodyBytes),
        "--seconds",
        String(seconds),
      ],
      { logFile: join(ctx.ws.dir, `flood-${which.replace(/\W+/g, "_")}.log`), role: "load" },
    );
    const samples: Sample[] = [];
    const t0 = performance.now();
    const target = sut;
    const sampling = (async () => {
      while (client?.running && performance.now() - t0 < seconds * 1000 + 30_000) {
        const at = performance.now() - t0;
        const rss = rssBytes(target.pids());
        const held = adminUrl
          ? await scrape(adminUrl)
              .then((t) => metricValue(t, "coldfront_held_bytes"))
              .catch(() => Number.NaN)
          : Number.NaN;
        samples.push({ at, rss, held });
        await sleep(Math.max(0, SAMPLE_MS - (performance.now() - t0 - at)));
      }
    })();
    const code = await client.wait(seconds * 1000 + 30_000);
    await sampling;
    if (code !== 0) throw new Error(`flood client failed: ${client.describe()}`);
    const report = JSON.parse(client.stdout.trim().split("\n").pop() ?? "") as FloodReport;
    return { system: which, idleRss, samples, report };
  } finally {
    await client?.stop(1000);
    await sut?.stop();
  }
}

function outcomes(r: FloodReport): string {
  return Object.entries(r.outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} × ${fmt(n)} (p50 ${fmt(r.p50[k], 0)} ms)`)
    .join(", ");
}

export async function flood(ctx: Context): Promise<ScenarioResult & { chart?: string }> {
  const seconds = ctx.quick ? 6 : 15;
  const limits = await coldfrontLimits();
  const runs: (FloodRun | { system: string; skipped: string })[] = [];
  for (const which of ["coldfront", "@fastify/http-proxy"] as const) {
    runs.push(await floodThrough(ctx, which, limits, seconds));
  }
  const done = runs.filter((r): r is FloodRun => "samples" in r);
  const peak = (r: FloodRun) => Math.max(...r.samples.map((s) => s.rss));
  const rows = runs.map((r) => {
    if (!("samples" in r))
      return [r.system, "—", "—", "—", "—", "—", "—", "—", "—", "—", `skipped: ${r.skipped}`];
    const answered = Object.values(r.report.outcomes).reduce((a, b) => a + b, 0);
    return [
      r.system,
      fmt(answered / seconds, 1),
      "—",
      "—",
      "—",
      "—",
      fmt(r.idleRss / MIB, 0),
      fmt(peak(r) / MIB, 0),
      fmt(r.report.started),
      fmt(r.report.heldAtEnd),
      outcomes(r.report) || "none",
    ];
  });
  // RSS over time, one row a second: the largest sample within that second (row 0: before the flood).
  const hasHeld = done.some((r) => r.samples.some((s) => Number.isFinite(s.held)));
  const bucket = (r: FloodRun, t: number) =>
    t === 0 ? r.samples.slice(0, 1) : r.samples.filter((s) => s.at >= (t - 1) * 1000 && s.at < t * 1000);
  const lastSecond = Math.ceil(Math.max(0, ...done.flatMap((r) => r.samples.map((s) => s.at))) / 1000);
  const rowsOverTime: string[][] = [];
  for (let t = 0; t <= lastSecond; t++) {
    const row = [`${t}`];
    for (const r of done) {
      const b = bucket(r, t);
      row.push(b.length > 0 ? fmt(Math.max(...b.map((s) => s.rss)) / MIB, 0) : "—");
      if (r.system === "coldfront" && hasHeld) {
        const held = b.at(-1)?.held;
        row.push(held !== undefined && Number.isFinite(held) ? fmt(held / MIB, 0) : "—");
      }
    }
    rowsOverTime.push(row);
  }
  const cf = done.find((r) => r.system === "coldfront");
  const budget = limits.maxHeldBytes;
  const budgetText =
    budget === undefined
      ? "**this build has no `limits.maxHeldBytes`** (its config schema does not mention it): coldfront ran with no byte budget, bounded only by maxPending x maxBodyBytes"
      : `\`limits.maxHeldBytes\` ${fmt(budget / MIB, 0)} MiB (the build's default, passed explicitly)`;
  const queueFull = cf
    ? Object.entries(cf.report.outcomes).filter(([k]) => k.startsWith("503 queue_full"))
    : [];
  const checks: Check[] = [
    {
      source: "issue 10",
      target: `flood: coldfront peak RSS (${CLIENTS} clients x ${fmt(limits.maxBodyBytes / MIB, 0)} MiB)`,
      goal:
        budget === undefined
          ? "bounded by maxHeldBytes"
          : `<= idle + maxHeldBytes x 1.5 (${fmt(budget / MIB, 0)} MiB budget)`,
      measured: cf
        ? `${fmt(peak(cf) / MIB, 0)} MB (idle ${fmt(cf.idleRss / MIB, 0)} MB); 503 queue_full × ${fmt(queueFull.reduce((n, [, c]) => n + c, 0))}`
        : "—",
      met: cf && budget !== undefined ? peak(cf) <= cf.idleRss + budget * 1.5 : undefined,
    },
  ];
  let chart: string | undefined;
  if (done.length > 0) {
    const c: LineChart = {
      title: `Memory flood: ${CLIENTS} clients sending ${fmt(limits.maxBodyBytes / MIB, 0)} MiB bodies to a cold target`,
      xLabel: "seconds since the flood started",
      yLabel: "RSS, MiB",
      series: done.map((r, i) => ({
        name: r.system,
        color: i === 0 ? "#2563eb" : "#d97706",
        points: r.samples.map((s) => [s.at / 1000, s.rss / MIB] as const),
      })),
      marks:
        budget !== undefined && cf
          ? [{ y: (cf.idleRss + budget) / MIB, label: "coldfront idle + maxHeldBytes" }]
          : [],
    };
    chart = lineChartSvg(c);
  }
  return {
    section: {
      title: "6. Memory flood",
      about: `${CLIENTS} concurrent clients, each sending a ${fmt(limits.maxBodyBytes, 0)} B chat completion (coldfront's maxBodyBytes, from ${limits.how}) and sending the next as soon as it is answered, for ${seconds} s, to a cold target whose port stays closed throughout; then the clients abort what is still open and every process is stopped. coldfront: probe readiness on the closed port, every limit at its default; ${budgetText}. @fastify/http-proxy: the same bodyLimit, no budget of any kind (it streams each body to the upstream, which refuses the connection). req/s is answers per second; RSS is the process tree's, sampled every ${SAMPLE_MS} ms.`,
      tables: [
        {
          header: [
            ...LEAD(""),
            "idle RSS MB",
            "peak RSS MB",
            "requests started",
            "open at the end (aborted by the client)",
            "how they ended (outcome × count, p50 time to it)",
          ],
          rows,
        },
        {
          header: [
            "second",
            ...done.flatMap((r) =>
              r.system === "coldfront" && hasHeld
                ? [`${r.system} RSS MB`, "coldfront_held_bytes MiB"]
                : [`${r.system} RSS MB`],
            ),
          ],
          rows: rowsOverTime,
        },
      ],
      notes: [
        "Outcomes: `<status> <error code>` for an answer (the OpenAI-shaped body's error.code), an error code (ECONNRESET, UND_ERR_SOCKET, ...) for a request that got no answer; requests still open when the flood ended (held by coldfront, or still uploading) were aborted by the client and are counted apart.",
        "The over-time table shows, per second, the largest RSS sample within it.",
      ],
    },
    checks,
    ...(chart ? { chart } : {}),
  };
}
