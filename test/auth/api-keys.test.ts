/** README "Who may wake a model": optional API keys, checked at the door, before anything is held. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { ApiKeys, presentedKey } from "../../src/auth/api-keys.js";
import { ConfigError } from "../../src/errors.js";
import { errorBody, startColdTarget, testLogger, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

async function keyFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "coldfront-keys-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "keys");
  await writeFile(file, text);
  return file;
}

describe("presented keys", () => {
  test("Authorization: Bearer, Azure's api-key and x-api-key", () => {
    expect(presentedKey({ authorization: "Bearer sk-1" })).toBe("sk-1");
    expect(presentedKey({ authorization: "bearer   sk-2 " })).toBe("sk-2");
    expect(presentedKey({ "api-key": "sk-3" })).toBe("sk-3");
    expect(presentedKey({ "x-api-key": "sk-4" })).toBe("sk-4");
    expect(presentedKey({ authorization: "Basic dXNlcjpwYXNz" })).toBeUndefined();
    expect(presentedKey({})).toBeUndefined();
  });
});

describe("the key file", () => {
  test("one key per line; comments and blank lines ignored; ids are stable and are not the key", async () => {
    const file = await keyFile("# team a\nsk-alpha\n\n  sk-beta  \n");
    const keys = await ApiKeys.load(file, testLogger());
    defer(() => keys.stop());
    expect(keys.size).toBe(2);
    const a = keys.verify({ authorization: "Bearer sk-alpha" });
    expect(a).toBeDefined();
    expect(a).not.toContain("alpha");
    expect(keys.verify({ "x-api-key": "sk-alpha" })).toBe(a);
    expect(keys.verify({ authorization: "Bearer sk-beta" })).not.toBe(a);
    expect(keys.verify({ authorization: "Bearer sk-gamma" })).toBeUndefined();
    expect(keys.verify({ authorization: "Bearer sk-alph" })).toBeUndefined();
  });

  test("a missing or empty file fails at start naming auth.apiKeys.file", async () => {
    await expect(ApiKeys.load("/nonexistent/keys", testLogger())).rejects.toThrow(ConfigError);
    await expect(ApiKeys.load("/nonexistent/keys", testLogger())).rejects.toThrow(/auth\.apiKeys\.file/);
    const empty = await keyFile("# nothing yet\n\n");
    await expect(ApiKeys.load(empty, testLogger())).rejects.toThrow(/auth\.apiKeys\.file: .* holds no keys/);
  });

  test("a changed file is read again; one that became empty keeps the keys it had", async () => {
    const file = await keyFile("sk-old\n");
    const keys = await ApiKeys.load(file, testLogger(), 50);
    defer(() => keys.stop());
    // mtime resolution can be coarse: make sure the rewrite is seen as a change.
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(file, "sk-new\n");
    await waitFor(() => keys.verify({ authorization: "Bearer sk-new" }) !== undefined, "new key loaded");
    expect(keys.verify({ authorization: "Bearer sk-old" })).toBeUndefined();
    await writeFile(file, "\n");
    await new Promise((r) => setTimeout(r, 200));
    expect(keys.verify({ authorization: "Bearer sk-new" })).toBeDefined();
  });
});

describe("through the proxy", () => {
  test("without a valid key: 401 invalid_api_key before anything is held; nothing wakes, nothing reaches the upstream", async () => {
    const file = await keyFile("sk-good\n");
    const { up, app, gate } = await startColdTarget(defer, { extra: { auth: { apiKeys: { file } } } });
    for (const headers of [{}, { authorization: "Bearer sk-bad" }, { "api-key": "nope" }] as Record<
      string,
      string
    >[]) {
      const r = await fetch(`${app.clientUrl}/v1/completions`, { method: "POST", body: "{}", headers });
      expect(r.status).toBe(401);
      expect(r.headers.get("x-should-retry")).toBe("false");
      const e = await errorBody(r);
      expect(e.error.type).toBe("invalid_api_key");
      expect(e.error.code).toBe("invalid_api_key");
      expect(gate().pending).toBe(0);
    }
    const models = await fetch(`${app.clientUrl}/v1/models`);
    expect(models.status).toBe(401);

    const good = fetch(`${app.clientUrl}/v1/completions`, {
      method: "POST",
      body: "{}",
      headers: { authorization: "Bearer sk-good" },
    });
    await waitFor(() => gate().pending === 1, "the keyed request is held");
    await up.start();
    expect((await good).status).toBe(200);
    expect(up.seen).toHaveLength(1);
    // The gateway may check the key too: it is forwarded unchanged.
    expect(up.seen[0]?.headers.authorization).toBe("Bearer sk-good");
  });
});
