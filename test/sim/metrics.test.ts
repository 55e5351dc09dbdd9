/** vLLM's metrics as the simulator exposes them: names, labels, and what max-num-seqs does to them. */
import OpenAI from "openai";
import { describe, expect, test } from "vitest";
import type { SimOptions } from "../../src/sim/options.js";
import { startSim } from "../../src/sim/server.js";
import { testLogger, useCleanups, waitFor } from "../helpers/app.js";
import { sample, scrape } from "./prometheus.js";

const defer = useCleanups();
const MODEL = "coldfront-sim";
const L = { model_name: MODEL };

async function start(options: Partial<SimOptions>) {
  const sim = await startSim({ port: 0, logger: testLogger(), ...options });
  defer(() => sim.close());
  await sim.ready;
  const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "x", maxRetries: 0 });
  const load = async () => {
    const text = await scrape(sim.url);
    return {
      running: sample(text, "vllm:num_requests_running", L),
      waiting: sample(text, "vllm:num_requests_waiting", L),
      kv: sample(text, "vllm:kv_cache_usage_perc", L),
      text,
    };
  };
  return { sim, client, load };
}

describe("sim: metrics", () => {
  test("every series exists from start at 0, with vLLM's names, types and model_name label", async () => {
    const { sim } = await start({});
    const text = await scrape(sim.url);
    const types: [string, string][] = [
      ["vllm:num_requests_running", "gauge"],
      ["vllm:num_requests_waiting", "gauge"],
      ["vllm:kv_cache_usage_perc", "gauge"],
      ["vllm:prompt_tokens_total", "counter"],
      ["vllm:generation_tokens_total", "counter"],
      ["vllm:request_success_total", "counter"],
      ["vllm:time_to_first_token_seconds", "histogram"],
      ["vllm:e2e_request_latency_seconds", "histogram"],
    ];
    for (const [name, type] of types) expect(text).toContain(`# TYPE ${name} ${type}\n`);
    for (const name of [
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "vllm:kv_cache_usage_perc",
      "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total",
      "vllm:time_to_first_token_seconds_count",
      "vllm:e2e_request_latency_seconds_count",
    ])
      expect(sample(text, name, L)).toBe(0);
    for (const reason of ["stop", "length", "abort"])
      expect(sample(text, "vllm:request_success_total", { ...L, finished_reason: reason })).toBe(0);
  });

  test("beyond max-num-seqs the excess waits; afterwards success, tokens and latencies are counted", async () => {
    // Each request generates 25 tokens 40 ms apart: about a second per batch of two.
    const { client, load } = await start({ maxNumSeqs: 2, itl: 40, maxTokens: 25 });
    const calls = Array.from({ length: 4 }, (_, i) =>
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: `request number ${i}` }],
      }),
    );
    await waitFor(async () => {
      const l = await load();
      return l.running === 2 && l.waiting === 2;
    }, "2 running and 2 waiting");
    expect((await load()).kv).toBe(1);

    const answers = await Promise.all(calls);
    expect(answers.every((a) => a.choices[0]?.finish_reason === "length")).toBe(true);
    const l = await load();
    expect([l.running, l.waiting, l.kv]).toEqual([0, 0, 0]);
    expect(sample(l.text, "vllm:request_success_total", { ...L, finished_reason: "length" })).toBe(4);
    expect(sample(l.text, "vllm:request_success_total", { ...L, finished_reason: "abort" })).toBe(0);
    expect(sample(l.text, "vllm:generation_tokens_total", L)).toBe(100);
    expect(sample(l.text, "vllm:prompt_tokens_total", L)).toBe(12);
    expect(sample(l.text, "vllm:time_to_first_token_seconds_count", L)).toBe(4);
    expect(sample(l.text, "vllm:e2e_request_latency_seconds_count", L)).toBe(4);
  });

  test("a client that disconnects frees its slot at once, waiting or running; counted as abort", async () => {
    // ttft of an hour: nothing finishes on its own, every change below is a disconnect.
    const { client, load } = await start({ maxNumSeqs: 1, ttft: 3_600_000 });
    const send = () => {
      const ac = new AbortController();
      const done = client.chat.completions
        .create({ model: MODEL, messages: [{ role: "user", content: "hi" }] }, { signal: ac.signal })
        .catch((e: unknown) => e);
      return { abort: () => ac.abort(), done };
    };
    const state = async (running: number, waiting: number, what: string) =>
      waitFor(async () => {
        const l = await load();
        return l.running === running && l.waiting === waiting;
      }, what);

    const a = send();
    await state(1, 0, "a running");
    const b = send();
    await state(1, 1, "b waiting");
    const c = send();
    await state(1, 2, "c waiting");

    b.abort();
    await state(1, 1, "b gone from the queue");
    a.abort();
    await state(1, 0, "c running in a's slot");
    c.abort();
    await state(0, 0, "all gone");
    for (const r of [a, b, c]) expect(await r.done).toBeInstanceOf(OpenAI.APIUserAbortError);
    const text = (await load()).text;
    expect(sample(text, "vllm:request_success_total", { ...L, finished_reason: "abort" })).toBe(3);
    expect(sample(text, "vllm:time_to_first_token_seconds_count", L)).toBe(0);
  });
});
