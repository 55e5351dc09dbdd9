/**
 * Scenario 5: how soon KEDA hears about demand. A StreamIsActive call (what KEDA's
 * external-push trigger keeps open) is open on coldfront's gRPC scaler; one request arrives for
 * the cold target; the time from sending it to the stream's `result: true` is the wake signal's
 * latency (the HTTP request's own trip included). Each repetition opens a fresh stream, whose
 * first value is the current state (false), so no repetition waits for a keep-alive tick.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import { KedaClient } from "../../test/helpers/keda-client.js";
import { targetCounts } from "../lib/admin.js";
import { freePort, poll } from "../lib/procs.js";
import { type Context, LEAD, type ScenarioResult } from "../lib/report.js";
import { fmt, max, percentile } from "../lib/stats.js";
import { type Coldfront, startColdfront } from "../lib/systems.js";
import { coldConfig } from "./cold-burst.js";
import { CHAT_BODY } from "./warm.js";

export async function wakeSignal(ctx: Context): Promise<ScenarioResult> {
  const reps = ctx.quick ? 5 : 20;
  const upstream = `http://127.0.0.1:${await freePort()}`;
  const scalerPort = await freePort();
  const base = coldConfig(upstream, 1000, "wake");
  let cf: Coldfront | undefined;
  let keda: KedaClient | undefined;
  const agent = new Agent();
  const latencies: number[] = [];
  try {
    cf = await startColdfront(ctx.ws, {
      ...base,
      config: { ...base.config, scaler: { listen: `127.0.0.1:${scalerPort}` } },
    });
    const adminUrl = cf.adminUrl;
    keda = await KedaClient.connect(`127.0.0.1:${scalerPort}`);
    ctx.log(`wake: ${reps} repetitions`);
    // Repetition 0 opens the gRPC channel and is not counted.
    for (let rep = 0; rep <= reps; rep++) {
      const stream = keda.streamIsActive({ target: "model" });
      const abort = new AbortController();
      try {
        await stream.waitFor((active) => !active, 0, 10_000);
        const from = stream.values.length;
        const t0 = performance.now();
        const held = request(`${cf.url}/v1/chat/completions`, {
          method: "POST",
          body: CHAT_BODY,
          headers: { "content-type": "application/json" },
          dispatcher: agent,
          signal: abort.signal,
        }).catch(() => undefined);
        const t1 = stream.times[await stream.waitFor((active) => active, from, 10_000)] as number;
        if (rep > 0) latencies.push(t1 - t0);
        abort.abort();
        await held;
      } finally {
        abort.abort();
        stream.cancel();
      }
      // The held request is dropped when its client leaves; start the next one from zero.
      await poll(
        "no held requests",
        async () => ((await targetCounts(adminUrl, "model"))?.pending === 0 ? true : undefined),
        10_000,
      );
      await sleep(50);
    }
  } finally {
    keda?.close();
    await agent.close().catch(() => {});
    await cf?.stop();
  }
  return {
    section: {
      title: "5. Wake signal (KEDA external-push)",
      about: `One request for a cold target while a StreamIsActive call is open on coldfront's gRPC scaler (trigger metadata \`target: model\`): the time from sending the request to receiving \`result: true\`, ${reps} repetitions. For comparison, a prometheus trigger waits for a scrape (commonly 15 to 30 s) and then for KEDA's pollingInterval (30 s by default); a metrics-api trigger for the pollingInterval.`,
      tables: [
        {
          header: [...LEAD("request sent -> active"), "min ms", "max ms", "samples"],
          rows: [
            [
              "coldfront",
              "—",
              fmt(percentile(latencies, 50), 2),
              fmt(percentile(latencies, 99), 2),
              "—",
              "—",
              fmt(Math.min(...latencies), 2),
              fmt(max(latencies), 2),
              fmt(latencies.length),
            ],
          ],
        },
      ],
      notes: [],
    },
    checks: [],
  };
}
