/**
 * The memory flood (bench/README.md "The scenarios", 6): `clients` concurrent loops, each sending a max-size request body
 * (a valid chat completion padded to `body-bytes`) again as soon as the previous one is answered,
 * for `seconds`; then every request still open (held) is aborted. Prints one JSON line:
 * `{"outcomes": {"503 queue_full": n, "ECONNRESET": n, ...}, "p50": {outcome: ms},
 * "started": n, "heldAtEnd": n}`: an answer counts as `<status> <error code>` (the OpenAI-shaped
 * body's `error.code`, else `error.type`), a request that got no answer by its error code.
 *
 * Usage: node flood.js --url URL --clients 200 --body-bytes 16777216 --seconds 15
 */
import { parseArgs } from "node:util";
import { Agent, request } from "undici";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    clients: { type: "string", default: "200" },
    "body-bytes": { type: "string" },
    seconds: { type: "string", default: "15" },
  },
});
const clients = Number(values.clients);
const bodyBytes = Number(values["body-bytes"]);
const seconds = Number(values.seconds);
if (!values.url || !(clients > 0) || !(bodyBytes > 100) || !(seconds > 0)) {
  process.stderr.write("usage: flood --url URL --clients N --body-bytes B --seconds S\n");
  process.exit(2);
}

/** A chat completion of exactly `bytes` bytes. */
function body(bytes: number): Buffer {
  const empty = JSON.stringify({ model: "bench-model", messages: [{ role: "user", content: "" }] });
  const head = empty.slice(0, -4);
  const buf = Buffer.alloc(bytes, "x");
  buf.write(head, 0, "utf8");
  buf.write(empty.slice(-4), bytes - 4, "utf8");
  return buf;
}

const payload = body(bodyBytes);
const url = new URL("/v1/chat/completions", values.url).toString();
// No timeouts of undici's own: a held request waits until the flood ends.
const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0, connect: { timeout: 30_000 } });
const end = new AbortController();
const outcomes: Record<string, number> = {};
const times: Record<string, number[]> = {};
let started = 0;
let heldAtEnd = 0;

function count(key: string, ms: number): void {
  outcomes[key] = (outcomes[key] ?? 0) + 1;
  const list = times[key] ?? [];
  list.push(ms);
  times[key] = list;
}

async function one(): Promise<void> {
  const t0 = performance.now();
  started++;
  try {
    const res = await request(url, {
      method: "POST",
      body: payload,
      headers: { "content-type": "application/json", "content-length": String(payload.length) },
      dispatcher: agent,
      signal: end.signal,
    });
    const text = await res.body.text().catch(() => "");
    let code = "";
    try {
      const e = (JSON.parse(text) as { error?: { code?: unknown; type?: unknown } }).error;
      code = String(e?.code ?? e?.type ?? "");
    } catch {}
    count(`${res.statusCode}${code ? ` ${code}` : ""}`, performance.now() - t0);
  } catch (err) {
    if (end.signal.aborted) {
      heldAtEnd++;
      return;
    }
    const e = err as { code?: string; cause?: { code?: string }; name?: string };
    count(e.code ?? e.cause?.code ?? e.name ?? "error", performance.now() - t0);
  }
}

async function loop(): Promise<void> {
  while (!end.signal.aborted) await one();
}

const timer = setTimeout(() => end.abort(), seconds * 1000);
await Promise.all(Array.from({ length: clients }, () => loop()));
clearTimeout(timer);
await agent.destroy().catch(() => {});
const p50: Record<string, number> = {};
for (const [k, list] of Object.entries(times)) {
  list.sort((a, b) => a - b);
  p50[k] = list[Math.floor((list.length - 1) / 2)] as number;
}
// stdout is a pipe, written asynchronously: exit once the report is out, not before.
process.stdout.write(`${JSON.stringify({ outcomes, p50, started, heldAtEnd })}\n`, () => process.exit(0));
