/**
 * A burst of N concurrent requests, each on its own connection, all sent at once: the clients
 * of the cold-burst and hold-capacity scenarios. With `--rate R` the N requests are spread
 * instead, one every 1/R s (the late arrivals of the long-generation cold burst). `--gen-ms`
 * asks the backend for a generation that long (`x-bench-gen-ms`). Prints one JSON line at the
 * end: `{"sent": [epoch ms...], "done": [epoch ms...], "status": [200 | 502 | 0 (no answer)...],
 * "errors": {code: count}}`.
 *
 * Usage: node burst.js --url URL --n N [--body-bytes 1024] [--timeout-ms 120000] [--rate R] [--gen-ms MS]
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Agent, request } from "undici";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    n: { type: "string" },
    "body-bytes": { type: "string", default: "256" },
    "timeout-ms": { type: "string", default: "120000" },
    rate: { type: "string", default: "0" },
    "gen-ms": { type: "string", default: "0" },
  },
});
const n = Number(values.n);
const timeoutMs = Number(values["timeout-ms"]);
const rate = Number(values.rate);
const genMs = Number(values["gen-ms"]);
if (!values.url || !(n > 0) || !(timeoutMs > 0) || !(rate >= 0) || !(genMs >= 0)) {
  process.stderr.write(
    "usage: burst --url URL --n N [--body-bytes B] [--timeout-ms MS] [--rate R] [--gen-ms MS]\n",
  );
  process.exit(2);
}

/** A chat completion request whose user message pads it to about `bytes`. */
function chatBody(bytes: number): string {
  const empty = { model: "bench-model", max_tokens: 16, messages: [{ role: "user", content: "" }] };
  const pad = Math.max(0, bytes - JSON.stringify(empty).length);
  empty.messages[0] = { role: "user", content: "x".repeat(pad) };
  return JSON.stringify(empty);
}

const body = chatBody(Number(values["body-bytes"]));
const url = new URL("/v1/chat/completions", values.url).toString();
// No header or body timeout of undici's own: a held request waits as long as the hold lasts.
const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0, connect: { timeout: 60_000 } });
const now = () => performance.timeOrigin + performance.now();

const sent = new Array<number>(n).fill(0);
const done = new Array<number>(n).fill(0);
const status = new Array<number>(n).fill(0);
const errors: Record<string, number> = {};
const signal = AbortSignal.timeout(timeoutMs);
const headers: Record<string, string> = {
  "content-type": "application/json",
  ...(genMs > 0 ? { "x-bench-gen-ms": String(genMs) } : {}),
};

async function one(i: number): Promise<void> {
  sent[i] = now();
  try {
    const res = await request(url, {
      method: "POST",
      body,
      headers,
      dispatcher: agent,
      signal,
    });
    await res.body.dump({ limit: 1 << 20 });
    status[i] = res.statusCode;
  } catch (err) {
    const e = err as { code?: string; cause?: { code?: string }; name?: string };
    const code = e.code ?? e.cause?.code ?? e.name ?? "error";
    errors[code] = (errors[code] ?? 0) + 1;
  }
  done[i] = now();
}

if (rate > 0) {
  // Spread: request i leaves at start + i / rate s, whatever the earlier ones are doing.
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(one(i));
  }
  await Promise.all(pending);
} else {
  await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
}
await agent.destroy();
// stdout is a pipe, written asynchronously: exit once the report is out, not before.
process.stdout.write(`${JSON.stringify({ sent, done, status, errors })}\n`, () => process.exit(0));
