/**
 * A streaming client that timestamps every chunk as it arrives: `streams` concurrent SSE
 * requests, `rounds` times over, against a backend that paces its chunks (`x-bench-itl-ms`).
 * Any buffering on the way shows up as a late first byte or as a gap between chunks larger than
 * the pacing. Prints one JSON line: `{"firstByte": [ms...], "maxGap": [ms...], "events": [n...],
 * "elapsedMs": ms, "errors": n}`, one entry per stream.
 *
 * Usage: node paced.js --url URL [--streams 10] [--rounds 3] [--chunks 50] [--itl 20]
 */
import { parseArgs } from "node:util";
import { Agent, request } from "undici";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    streams: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    chunks: { type: "string", default: "50" },
    itl: { type: "string", default: "20" },
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

const url = new URL("/v1/chat/completions", values.url).toString();
const body = JSON.stringify({
  model: "bench-model",
  stream: true,
  max_tokens: chunks,
  messages: [{ role: "user", content: "Tell me a story." }],
});
const agent = new Agent({ headersTimeout: 30_000, bodyTimeout: 30_000 });

const firstByte: number[] = [];
const maxGap: number[] = [];
const events: number[] = [];
let errors = 0;

async function one(): Promise<void> {
  const t0 = performance.now();
  try {
    const res = await request(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "x-bench-itl-ms": String(itl) },
      dispatcher: agent,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      errors++;
      return;
    }
    let last: number | undefined;
    let gap = 0;
    let n = 0;
    let tail = "";
    for await (const chunk of res.body) {
      const t = performance.now();
      if (last === undefined) firstByte.push(t - t0);
      else gap = Math.max(gap, t - last);
      last = t;
      // Events end with a blank line, whose two newlines may straddle two reads.
      const text = tail + (chunk as Buffer).toString("utf8");
      n += text.split("\n\n").length - 1;
      tail = text.endsWith("\n") && !text.endsWith("\n\n") ? "\n" : "";
    }
    maxGap.push(gap);
    events.push(n);
  } catch {
    errors++;
  }
}

// One unmeasured round first: connections open and code warm, so first-byte times are about the
// path, not about this process starting.
const warm = JSON.stringify({ model: "bench-model", stream: true, max_tokens: 2, messages: [] });
await Promise.all(
  Array.from({ length: streams }, async () => {
    const res = await request(url, {
      method: "POST",
      body: warm,
      headers: { "content-type": "application/json" },
      dispatcher: agent,
    });
    await res.body.dump();
  }),
);

const start = performance.now();
for (let r = 0; r < rounds; r++) {
  await Promise.all(Array.from({ length: streams }, () => one()));
}
const elapsedMs = performance.now() - start;
await agent.destroy();
// stdout is a pipe, written asynchronously: exit once the report is out, not before.
process.stdout.write(`${JSON.stringify({ firstByte, maxGap, events, elapsedMs, errors })}\n`, () =>
  process.exit(0),
);
