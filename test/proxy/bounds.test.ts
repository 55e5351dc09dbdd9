/**
 * The listener's door (README "Bounds"): the byte budget over bodies held and bodies still being
 * read, body and header timeouts, the connection cap, and origin-form request targets. Every
 * refusal is an OpenAI-shaped answer, and none of it disturbs requests already held.
 */
import { describe, expect, test } from "vitest";
import { errorBody, metricValue, startColdTarget, useCleanups, waitFor } from "../helpers/app.js";
import { RawClient } from "../helpers/raw.js";

const defer = useCleanups();

const KiB = 1024;

/** A JSON body of exactly `bytes` bytes. */
function bodyOf(bytes: number, id = "x"): string {
  const head = `{"id":"${id}","pad":"`;
  return `${head}${"a".repeat(bytes - head.length - 2)}"}`;
}

async function status(adminUrl: string): Promise<{ heldBytes: number; maxHeldBytes: number }> {
  return (await (await fetch(`${adminUrl}/status`)).json()) as { heldBytes: number; maxHeldBytes: number };
}

async function openRaw(url: string): Promise<RawClient> {
  const c = await RawClient.open(url);
  defer(() => c.close());
  return c;
}

describe("the byte budget (limits.maxHeldBytes)", () => {
  test("held bodies count; past the budget 503 queue_full with Retry-After; the bytes show in /status and the gauge and return once answered", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      extra: { limits: { maxBodyBytes: "300KiB", maxHeldBytes: "1MiB" } },
    });
    const post = (id: string) =>
      fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: bodyOf(300 * KiB, id) });
    const held = [post("a"), post("b"), post("c")];
    await waitFor(() => gate().pending === 3, "3 held");
    expect((await status(app.adminUrl)).heldBytes).toBe(900 * KiB);
    expect(await metricValue(app, "coldfront_held_bytes")).toBe(900 * KiB);

    const over = await post("d");
    expect(over.status).toBe(503);
    expect(over.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(over.headers.get("x-should-retry")).toBe("true");
    const e = await errorBody(over);
    expect(e.error.type).toBe("queue_full");
    expect(e.error.message).toContain("limits.maxHeldBytes");
    expect(gate().pending).toBe(3);

    await up.start();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    expect(up.seen.map((s) => JSON.parse(s.body).id).sort()).toEqual(["a", "b", "c"]);
    await waitFor(async () => (await status(app.adminUrl)).heldBytes === 0, "budget back to 0");
  });

  test("bodies still being read count too, by their Content-Length, before a byte of them is held", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      extra: { limits: { maxBodyBytes: "500KiB", maxHeldBytes: "1MiB" } },
    });
    const slow: RawClient[] = [];
    for (const id of ["s1", "s2"]) {
      const body = bodyOf(400 * KiB, id);
      const c = await openRaw(app.clientUrl);
      c.write(
        `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 1000)}`,
      );
      slow.push(c);
    }
    await waitFor(async () => (await status(app.adminUrl)).heldBytes === 800 * KiB, "800 KiB reserved");
    expect(gate().pending).toBe(0);

    const over = await fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: bodyOf(300 * KiB) });
    expect(over.status).toBe(503);
    expect((await errorBody(over)).error.type).toBe("queue_full");

    // One slow body completes and is held; the other's client gives up: its bytes come back.
    const first = slow[0] as RawClient;
    first.write(bodyOf(400 * KiB, "s1").slice(1000));
    await waitFor(() => gate().pending === 1, "s1 held");
    (slow[1] as RawClient).close();
    await waitFor(async () => (await status(app.adminUrl)).heldBytes === 400 * KiB, "s2's bytes returned");

    await up.start();
    const r = await first.response();
    expect(r.status).toBe(200);
    expect(up.seen.map((s) => JSON.parse(s.body).id)).toEqual(["s1"]);
    await waitFor(async () => (await status(app.adminUrl)).heldBytes === 0, "budget back to 0");
  });

  test("a refused client that half-closes before sending its body does not take coldfront down", async () => {
    // Regression: the parse error this raises arrives after Node detached the answered response
    // (socket._httpMessage is null there), and a handler that read it crashed the process.
    const { app } = await startColdTarget(defer, {
      extra: { limits: { maxBodyBytes: "1MiB", maxHeldBytes: "64KiB" } },
    });
    for (let i = 0; i < 3; i++) {
      const c = await openRaw(app.clientUrl);
      c.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n");
      const r = await c.response();
      expect(r.status).toBe(503);
      c.socket.end();
      await c.until(() => false, 300);
    }
    expect((await fetch(`${app.adminUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${app.clientUrl}/v1/anything`)).status).toBe(503);
  });

  test("a chunked body is counted as it arrives and refused with 413 once past maxBodyBytes", async () => {
    const { app } = await startColdTarget(defer, { extra: { limits: { maxBodyBytes: "64KiB" } } });
    const c = await openRaw(app.clientUrl);
    c.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    const chunk = "a".repeat(16 * KiB);
    for (let i = 0; i < 5; i++) c.write(`${(16 * KiB).toString(16)}\r\n${chunk}\r\n`);
    const r = await c.response();
    expect(r.status).toBe(413);
    expect((r.json as { error: { type: string } }).error.type).toBe("body_too_large");
    await waitFor(async () => (await status(app.adminUrl)).heldBytes === 0, "nothing kept");
  });
});

describe("client-side timeouts (limits.requestTimeout)", () => {
  test("a body that stops arriving gets 408 request_timeout, the connection closes and its bytes are returned", async () => {
    const { up, app, gate } = await startColdTarget(defer, {
      extra: { limits: { requestTimeout: "500ms" } },
    });
    await up.start();
    await waitFor(() => gate().ready, "ready");
    const c = await openRaw(app.clientUrl);
    c.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 16000\r\n\r\n0123456789");
    await waitFor(async () => (await status(app.adminUrl)).heldBytes === 16000, "reserved while read");
    const r = await c.until(() => false, 10_000);
    expect(r.status).toBe(408);
    expect(r.closed).toBe(true);
    const e = r.json as { error: { type: string; code: string; message: string } };
    expect(e.error.type).toBe("request_timeout");
    expect(e.error.code).toBe("request_timeout");
    expect(e.error.message).toContain("limits.requestTimeout");
    expect(up.seen).toHaveLength(0);
    await waitFor(async () => (await status(app.adminUrl)).heldBytes === 0, "its bytes returned");
  });

  test("headers that never complete get 408 request_timeout and the connection closes", async () => {
    const { app } = await startColdTarget(defer, { extra: { limits: { requestTimeout: "1s" } } });
    const c = await openRaw(app.clientUrl);
    c.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    const r = await c.until(() => false, 10_000);
    expect(r.closed).toBe(true);
    expect(r.status).toBe(408);
    expect((r.json as { error: { type: string } }).error.type).toBe("request_timeout");
  });
});

describe("the connection cap (limits.maxConnections)", () => {
  test("a connection past the cap gets 503 queue_full and is closed; once one closes, new ones are served", async () => {
    const { app } = await startColdTarget(defer, { extra: { limits: { maxConnections: 2 } } });
    const a = await openRaw(app.clientUrl);
    const b = await openRaw(app.clientUrl);
    const c = await openRaw(app.clientUrl);
    c.write("GET /v1/anything HTTP/1.1\r\nHost: x\r\n\r\n");
    const over = await c.until(() => false, 5000);
    expect(over.status).toBe(503);
    expect(over.closed).toBe(true);
    expect((over.json as { error: { type: string } }).error.type).toBe("queue_full");
    expect(over.text.toLowerCase()).toContain("retry-after:");
    a.close();
    await a.until(() => false, 100);
    const next = await fetch(`${app.clientUrl}/v1/anything`);
    expect((await errorBody(next)).error.type).toBe("target_cold");
    b.close();
  });
});

describe("request targets: origin-form only", () => {
  for (const [form, line] of [
    ["absolute-form", "POST http://internal-admin.svc/secret HTTP/1.1"],
    ["absolute-form for /v1/models", "GET http://x/v1/models HTTP/1.1"],
    ["asterisk-form", "OPTIONS * HTTP/1.1"],
    ["authority-form", "CONNECT internal-admin.svc:443 HTTP/1.1"],
  ] as const) {
    test(`${form} gets 400 invalid_request and nothing reaches the upstream`, async () => {
      const { up, app, gate } = await startColdTarget(defer, {
        target: { wakeMethods: ["POST", "GET", "OPTIONS"] },
      });
      await up.start();
      await waitFor(() => gate().ready, "ready");
      const c = await openRaw(app.clientUrl);
      c.write(`${line}\r\nHost: coldfront\r\nContent-Length: 2\r\n\r\n{}`);
      const r = await c.response();
      expect(r.status).toBe(400);
      expect((r.json as { error: { type: string } }).error.type).toBe("invalid_request");
      expect(up.seen).toHaveLength(0);
    });
  }

  test("an HTTP/1.1 request without Host gets 400 invalid_request in our shape", async () => {
    const { app } = await startColdTarget(defer);
    const c = await openRaw(app.clientUrl);
    c.write("POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    const r = await c.response();
    expect(r.status).toBe(400);
    expect((r.json as { error: { message: string } }).error.message).toContain("Host");
  });
});
