import OpenAI from "openai";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { waitFor } from "../helpers/app.js";
import { ensureBuilt, type Running, runCli } from "../helpers/cli.js";
import { localDemoConfig } from "../helpers/local-demo.js";

let running: Running | undefined;
beforeAll(() => ensureBuilt());
afterEach(async () => {
  await running?.kill();
  running = undefined;
});

interface Status {
  targets: Record<string, { state: string; lastColdStartMs: number | null; readiness: { state?: string } }>;
}

describe("npm start (examples/local.yaml)", () => {
  test("a request at zero starts the simulator, is held through its load, answered, and the simulator stops after idle", async () => {
    const { file, config, client, admin } = await localDemoConfig({
      startupDelay: "1s",
      idleTimeout: "1500ms",
    });
    const model = config.targets[0]?.match.models[0] as string;
    running = runCli(["proxy", "--config", file]);
    await running.waitForLog((l) => (l.msg === "coldfront started" ? true : undefined));

    // README: `curl .../v1/chat/completions` at zero.
    const res = await fetch(`${client}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hello there" }] }),
    });
    expect(res.status).toBe(200);
    expect(Number(res.headers.get("x-coldfront-held-ms"))).toBeGreaterThanOrEqual(1000);
    const body = (await res.json()) as { object: string; choices: { message: { content: string } }[] };
    expect(body.object).toBe("chat.completion");
    expect(body.choices[0]?.message.content.length).toBeGreaterThan(0);

    // Warm now: a streaming call through the real SDK.
    const sdk = new OpenAI({ baseURL: `${client}/v1`, apiKey: "unused", maxRetries: 0 });
    let streamed = "";
    for await (const chunk of await sdk.chat.completions.create({
      model,
      stream: true,
      messages: [{ role: "user", content: "stream please" }],
    })) {
      streamed += chunk.choices[0]?.delta.content ?? "";
    }
    expect(streamed.length).toBeGreaterThan(0);

    const models = (await (await fetch(`${client}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual([model]);

    const status = (await (await fetch(`${admin}/status`)).json()) as Status;
    expect(status.targets.sim?.state).toBe("ready");
    expect(status.targets.sim?.lastColdStartMs).toBeGreaterThanOrEqual(1000);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toContain('coldfront_cold_start_duration_seconds_count{target="sim"} 1');
    expect(metrics).toContain('coldfront_requests_total{target="sim",outcome="replayed"} 1');

    // Idle: the simulator is stopped, the target is cold again.
    const sim = async () => ((await (await fetch(`${admin}/status`)).json()) as Status).targets.sim;
    await waitFor(
      async () => (await sim())?.readiness.state === "stopped",
      "the simulator stopped after idleTimeout",
      15_000,
    );
    expect((await sim())?.state).toBe("cold");

    running.child.kill("SIGTERM");
    expect((await running.exited).code).toBe(0);
  }, 60_000);
});
