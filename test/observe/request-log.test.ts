/** README "Observing requests": opt-in request logs, one line per request, nothing secret in them. */
import Fastify from "fastify";
import { describe, expect, test } from "vitest";
import { startApp } from "../../src/app.js";
import { validateConfig } from "../../src/config/load.js";
import { requestLog } from "../../src/observe/request-log.js";
import { useCleanups, waitFor } from "../helpers/app.js";
import { Upstream } from "../helpers/upstream.js";

const defer = useCleanups();

interface Line {
  msg: string;
  [k: string]: unknown;
}

async function setup(log: Record<string, unknown>) {
  const raw: string[] = [];
  const logger = Fastify({
    logger: { level: "info", stream: { write: (l: string) => void raw.push(l) } },
  }).log;
  const up = new Upstream();
  up.port = await Upstream.reservePort();
  const app = await startApp(
    validateConfig({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      log: { level: "info", ...log },
      limits: { maxBodyBytes: "1KiB" },
      targets: [
        {
          name: "llama",
          upstream: up.url,
          readiness: { probe: { url: `${up.url}/health`, interval: "50ms", heldInterval: "20ms" } },
        },
      ],
    }),
    { logger },
  );
  defer(async () => {
    await app.close();
    await up.stop();
  });
  const lines = () => raw.map((l) => JSON.parse(l) as Line).filter((l) => l.msg === "request");
  return { app, up, raw, lines };
}

const SECRET_PROMPT = "the launch codes are 0000";

describe("request logs", () => {
  test("one line per request: target, method, path without query, status, held and upstream ms, bytes, outcome; never a body, query or header value", async () => {
    const { app, up, raw, lines } = await setup({ requests: true });
    const held = fetch(`${app.clientUrl}/v1/chat/completions?api_key=sk-in-query`, {
      method: "POST",
      headers: { authorization: "Bearer sk-secret-key", "x-custom": "header-value-secret" },
      body: JSON.stringify({ messages: [{ role: "user", content: SECRET_PROMPT }] }),
    });
    await waitFor(() => app.hub.get("llama")?.pending === 1, "held");
    await new Promise((r) => setTimeout(r, 100));
    await up.start();
    expect((await held).status).toBe(200);
    const tooLarge = await fetch(`${app.clientUrl}/v1/completions`, {
      method: "POST",
      body: "x".repeat(2048),
    });
    expect(tooLarge.status).toBe(413);
    await waitFor(() => lines().length === 2, "two request lines");

    const [replayed, refused] = lines() as [Line, Line];
    expect(replayed).toMatchObject({
      target: "llama",
      method: "POST",
      path: "/v1/chat/completions",
      status: 200,
      outcome: "replayed",
      attempts: 1,
    });
    expect(replayed.heldMs as number).toBeGreaterThanOrEqual(100);
    expect(replayed.upstreamMs as number).toBeGreaterThanOrEqual(0);
    expect(replayed.bytesIn).toBeGreaterThan(SECRET_PROMPT.length);
    expect(replayed.bytesOut).toBeGreaterThan(0);
    expect(refused).toMatchObject({ target: null, status: 413, outcome: "body_too_large", attempts: 0 });

    const all = raw.join("\n");
    for (const secret of [SECRET_PROMPT, "sk-in-query", "sk-secret-key", "header-value-secret", "api_key"])
      expect(all).not.toContain(secret);
  });

  test("off by default; sampled by log.requestSample", async () => {
    const off = await setup({});
    await off.up.start();
    await waitFor(() => off.app.hub.get("llama")?.ready === true, "ready");
    expect((await fetch(`${off.app.clientUrl}/v1/completions`, { method: "POST", body: "{}" })).status).toBe(
      200,
    );
    expect(off.lines()).toHaveLength(0);

    let n = 0;
    const log = Fastify({ logger: { level: "silent" } }).log;
    const factory = requestLog(log, 0.25, () => [0.1, 0.6, 0.9, 0.2][n++ % 4] as number);
    const facts = { method: "POST", path: "/v1/x", headers: {}, arrivedAt: 0 };
    const sampled = [1, 2, 3, 4].map(() => factory.start(facts) !== undefined);
    expect(sampled).toEqual([true, false, false, true]);
  });
});
