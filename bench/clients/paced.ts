/**
 * A streaming client that timestamps every chunk as it arrives: `streams` concurrent SSE
 * requests, `rounds` times over, against a backend that paces its chunks (`x-bench-itl-ms`).
 * Any buffering on the way shows up as a late first byte or as a gap between chunks larger than
 * the pacing.
 *
 * Lean enough to hold 1,000 streams at 50 chunks/s each on one core: undici's dispatch() with a
 * plain handler (no Readable per response), one connection per stream, counting events in the
 * raw bytes. After an unmeasured warm-up round (connections open, code warm) it prints
 * `{"event":"measuring"}` and waits `--pause-ms`, so that the harness can read the proxy's CPU
 * time at the start of the measured rounds; at their end it prints one JSON line:
 * `{"firstByte": [ms...], "maxGap": [ms...], "events": [n...], "duration": [ms...],
 * "elapsedMs": ms, "errors": n}`, one entry per stream.
 *
 * Usage: node paced.js --url URL [--streams 10] [--rounds 3] [--chunks 50] [--itl 20] [--pause-ms 100]
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Agent, type Dispatcher } from "undici";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    streams: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    chunks: { type: "string", default: "50" },
    itl: { type: "string", default: "20" },
    "pause-ms": { type: "string", default: "100" },
  },
});
if (!values.url) {
  process.stderr.write("usage: paced --url URL [--streams N] [--rounds N] [--chunks N] [--itl MS]\n");
  process.exit(2);
}
const streams = Number(values.streams);
const rounds = Number(values.rounds);
const chunks = Number(values.chunks);
const itl = Number(values.itl);
const pauseMs = Number(values["pause-ms"]);

const origin = new URL(values.url).origin;
const PATH = "/v1/chat/completions";
const streamBody = (n: number) =>
  JSON.stringify({
    model: "bench-model",
    stream: true,
    max_tokens: n,
    messages: [{ role: "user", content: "Tell me a story." }],
  });
const agent = new Agent({ headersTimeout: 60_000, bodyTimeout: 60_000 });
const NL = 0x0a;

const firstByte: number[] = [];
const maxGap: number[] = [];
const events: number[] = [];
const duration: number[] = [];
let errors = 0;

/** One stream; resolves when it ended, however it ended. */
function one(body: string, headers: Record<string, string>, measured: boolean): Promise<void> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let status = 0;
    let last: number | undefined;
    let gap = 0;
    let n = 0;
    // The previous read ended in one newline: a blank line may straddle two reads.
    let pendingNewline = false;
    const handler: Dispatcher.DispatchHandler = {
      // undici 8 refuses a handler without it.
      onRequestStart() {},
      onResponseStart(_controller, statusCode) {
        status = statusCode;
      },
      onResponseData(_controller, chunk) {
        const t = performance.now();
        if (last === undefined) {
          if (measured) firstByte.push(t - t0);
        } else if (t - last > gap) gap = t - last;
        last = t;
        let from = 0;
        if (pendingNewline && chunk[0] === NL) {
          n++;
          from = 1;
        }
        for (let i = chunk.indexOf("\n\n", from); i >= 0; i = chunk.indexOf("\n\n", i + 2)) n++;
        const len = chunk.length;
        pendingNewline = len > 0 && chunk[len - 1] === NL && !(len > 1 && chunk[len - 2] === NL);
      },
      onResponseEnd() {
        if (status !== 200) errors += measured ? 1 : 0;
        else if (measured) {
          maxGap.push(gap);
          events.push(n);
          duration.push(performance.now() - t0);
        }
        resolve();
      },
      onResponseError() {
        if (measured) errors++;
        resolve();
      },
    };
    agent.dispatch({ origin, path: PATH, method: "POST", body, headers }, handler);
  });
}

const headers = { "content-type": "application/json", "x-bench-itl-ms": String(itl) };
// One unmeasured round first: connections open and code warm, so first-byte times are about the
// path, not about this process starting.
const warm = streamBody(2);
await Promise.all(
  Array.from({ length: streams }, () => one(warm, { "content-type": "application/json" }, false)),
);

process.stdout.write(`${JSON.stringify({ event: "measuring" })}\n`);
await sleep(pauseMs);
const body = streamBody(chunks);
const start = performance.now();
for (let r = 0; r < rounds; r++) {
  await Promise.all(Array.from({ length: streams }, () => one(body, headers, true)));
}
const elapsedMs = performance.now() - start;
// stdout is a pipe, written asynchronously: exit once the report is out, not before.
process.stdout.write(
  `${JSON.stringify({ firstByte, maxGap, events, duration, elapsedMs, errors })}\n`,
  () => void agent.destroy().finally(() => process.exit(0)),
);
