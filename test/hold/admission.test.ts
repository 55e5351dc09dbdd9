/** Who may be held: wake methods, the per-client share, and gateway cold signals. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import type { ConfigInput } from "../../src/config/schema.js";
import { errorBody, startColdTarget, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

async function cold(extra: Partial<ConfigInput> = {}, target: Record<string, unknown> = {}) {
  const t = await startColdTarget(defer, { extra, target });
  return { ...t, pending: () => t.gate().pending };
}

const call = (base: string, key: string) =>
  fetch(`${base}/v1/completions`, {
    method: "POST",
    body: "{}",
    headers: { authorization: `Bearer ${key}` },
  });

async function keyFile(...keys: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "coldfront-keys-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "keys");
  await writeFile(file, `# one key per line\n${keys.join("\n")}\n`);
  return file;
}

describe("per-client share of maxPending", () => {
  test("one verified API key holds at most its share; the excess gets 429 rate_limited, others still get in", async () => {
    const file = await keyFile("runaway", "polite");
    const { up, app, pending } = await cold({
      limits: { maxPending: 6, maxClientShare: 0.5 },
      auth: { apiKeys: { file } },
    });
    const mine = [
      call(app.clientUrl, "runaway"),
      call(app.clientUrl, "runaway"),
      call(app.clientUrl, "runaway"),
    ];
    await waitFor(() => pending() === 3, "3 held");
    const over = await call(app.clientUrl, "runaway");
    expect(over.status).toBe(429);
    expect(over.headers.get("retry-after")).not.toBeNull();
    expect((await errorBody(over)).error.type).toBe("rate_limited");
    const other = call(app.clientUrl, "polite");
    await waitFor(() => pending() === 4, "other client held");
    await up.start();
    for (const r of await Promise.all([...mine, other])) expect(r.status).toBe(200);
  });

  test("without auth, an unverified key header buys no share of its own: rotating it still hits the address's share", async () => {
    const { app, pending } = await cold({ limits: { maxPending: 6, maxClientShare: 0.5 } });
    const held = [call(app.clientUrl, "k1"), call(app.clientUrl, "k2"), call(app.clientUrl, "k3")];
    await waitFor(() => pending() === 3, "3 held");
    const over = await call(app.clientUrl, "k4");
    expect(over.status).toBe(429);
    expect(pending()).toBe(3);
    await app.close();
    for (const r of await Promise.all(held)) expect(r.status).toBe(503);
  });

  test("without an API key, clients are told apart by address", async () => {
    const { app, pending } = await cold({ limits: { maxPending: 2, maxClientShare: 0.5 } });
    const first = fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}" });
    await waitFor(() => pending() === 1, "held");
    const second = await fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}" });
    expect(second.status).toBe(429);
    await app.close();
    expect((await first).status).toBe(503);
  });
});

describe("wakeMethods", () => {
  test("a GET listed in wakeMethods is held and released", async () => {
    const { up, app, pending } = await cold({}, { wakeMethods: ["POST", "GET"] });
    const res = fetch(`${app.clientUrl}/v1/anything`);
    await waitFor(() => pending() === 1, "GET held");
    await up.start();
    expect((await res).status).toBe(200);
  });

  test("a method not listed gets target_cold at zero and is forwarded when warm", async () => {
    const { up, app, pending } = await cold();
    const cold503 = await fetch(`${app.clientUrl}/v1/anything`, { method: "DELETE" });
    expect(cold503.status).toBe(503);
    expect((await errorBody(cold503)).error.type).toBe("target_cold");
    expect(pending()).toBe(0);
    await up.start();
    await waitFor(() => app.hub.get("llama")?.ready === true, "ready");
    expect((await fetch(`${app.clientUrl}/v1/anything`, { method: "DELETE" })).status).toBe(200);
  });
});

describe("gateway cold signals through the proxy", () => {
  for (const [name, answer] of [
    ["Inference Extension body", { status: 503, headers: {}, body: "failed to find endpoint candidates" }],
    ["production-stack body", { status: 503, headers: {}, body: "Service temporarily unavailable" }],
    ["Envoy body", { status: 503, headers: {}, body: "no healthy upstream" }],
    ["a configured signal", { status: 502, headers: { "x-gw": "warming" }, body: "" }],
  ] as const) {
    test(`${name}: held and replayed, the client sees only the final answer`, async () => {
      const configured =
        name === "a configured signal" ? { coldSignals: [{ status: 502, header: "x-gw: warming" }] } : {};
      const { up, app } = await cold({}, configured);
      let coldLeft = 2;
      up.handler = (_req, res) => {
        if (coldLeft-- > 0) {
          res.writeHead(answer.status, answer.headers);
          res.end(answer.body);
          return;
        }
        res.end("warm");
      };
      await up.start();
      await waitFor(() => app.hub.get("llama")?.ready === true, "ready");
      const res = await fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}" });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("warm");
      expect(up.seen).toHaveLength(3);
    });
  }

  test("an ordinary 503 of the upstream's own is relayed, not retried", async () => {
    const { up, app } = await cold();
    up.handler = (_req, res) => {
      res.writeHead(503, { "content-type": "application/json" });
      res.end('{"error":"model overloaded"}');
    };
    await up.start();
    await waitFor(() => app.hub.get("llama")?.ready === true, "ready");
    const res = await fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}" });
    expect(res.status).toBe(503);
    expect(await res.text()).toBe('{"error":"model overloaded"}');
    expect(up.seen).toHaveLength(1);
  });
});
