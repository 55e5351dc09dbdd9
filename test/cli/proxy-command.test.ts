import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { errorBody } from "../helpers/app.js";
import { ensureBuilt, type Running, runCli } from "../helpers/cli.js";
import { Upstream } from "../helpers/upstream.js";

const running: Running[] = [];
const upstreams: Upstream[] = [];
beforeAll(() => ensureBuilt());
afterEach(async () => {
  for (const r of running.splice(0)) await r.kill();
  for (const u of upstreams.splice(0)) await u.stop();
});

function writeConfig(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "coldfront-cli-"));
  const file = join(dir, "config.yaml");
  writeFileSync(file, text);
  return file;
}

function start(args: string[]): Running {
  const r = runCli(args);
  running.push(r);
  return r;
}

const listenUrl = (l: Record<string, unknown>) =>
  l.msg === "coldfront started" ? (l.listen as string) : undefined;

describe("coldfront proxy", () => {
  test("a bad config fails at start, naming the key", async () => {
    const file = writeConfig(
      `targets:\n  - name: llama\n    upstream: http://gw\nlimits:\n  holdTimeout: forever\n`,
    );
    const r = start(["proxy", "--config", file]);
    const { code } = await r.exited;
    expect(code).toBe(2);
    expect(r.stderr()).toContain("limits.holdTimeout");
    expect(r.stderr()).toContain("duration");
  });

  test("single-target flags are validated like a file", async () => {
    const r = start(["proxy", "--upstream", "not-a-url"]);
    expect((await r.exited).code).toBe(2);
    expect(r.stderr()).toContain("targets[0].upstream");
  });

  test("SIGTERM: held requests are released if the target wakes within the grace period, the rest get shutting_down, then exit 0", async () => {
    const up = new Upstream();
    upstreams.push(up);
    up.port = await Upstream.reservePort();
    const file = writeConfig(
      [
        "listen: 127.0.0.1:0",
        "admin: 127.0.0.1:0",
        "shutdown: {gracePeriod: 1500ms}",
        "targets:",
        "  - name: a",
        `    upstream: ${up.url}`,
        "    match: {pathPrefixes: [/a/]}",
        `    readiness: {probe: {url: "${up.url}/health", interval: 50ms, heldInterval: 20ms}}`,
        "  - name: b",
        "    upstream: http://127.0.0.1:9",
        "    match: {pathPrefixes: [/b/]}",
        "    readiness: {probe: {url: http://127.0.0.1:9/health, interval: 50ms}}",
        "",
      ].join("\n"),
    );
    const r = start(["proxy", "--config", file]);
    const base = await r.waitForLog(listenUrl);
    const a = [1, 2].map(() => fetch(`${base}/a/x`, { method: "POST", body: "{}" }));
    const b = [1, 2].map(() => fetch(`${base}/b/x`, { method: "POST", body: "{}" }));
    // Held: the log says so once per target.
    await r.waitForLog((l) =>
      l.msg === "holding requests for a cold target" && l.target === "b" ? true : undefined,
    );
    await r.waitForLog((l) =>
      l.msg === "holding requests for a cold target" && l.target === "a" ? true : undefined,
    );
    r.child.kill("SIGTERM");
    await r.waitForLog((l) => (l.msg === "shutting down" ? true : undefined));
    await up.start();
    for (const res of await Promise.all(a)) expect(res.status).toBe(200);
    for (const res of await Promise.all(b)) {
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect((await errorBody(res)).error.type).toBe("shutting_down");
    }
    expect((await r.exited).code).toBe(0);
    // The listener is closed: new connections are refused.
    await expect(fetch(`${base}/a/x`, { method: "POST", body: "{}" })).rejects.toThrow();
  });
});
