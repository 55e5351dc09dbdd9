/** `coldfront sim` flags, and the built executable as a user (or the process source) runs it. */
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { simOptionsFromArgs } from "../../src/sim/command.js";
import { ensureBuilt, type Running, runCli } from "../helpers/cli.js";
import { Upstream } from "../helpers/upstream.js";

const running: Running[] = [];
beforeAll(() => ensureBuilt());
afterEach(async () => {
  for (const r of running.splice(0)) await r.kill();
});

function start(args: string[]): Running {
  const r = runCli(args);
  running.push(r);
  return r;
}

describe("coldfront sim flags", () => {
  test("flags become options; durations take a unit", () => {
    const o = simOptionsFromArgs([
      "--port",
      "0",
      "--model",
      "llama",
      "--startup-delay",
      "2s",
      "--startup-mode",
      "unready",
      "--ttft",
      "150ms",
      "--itl",
      "40ms",
      "--max-num-seqs",
      "4",
      "--max-tokens",
      "32",
      "--output",
      "echo",
      "--seed",
      "9",
    ]);
    expect(o).toMatchObject({
      port: 0,
      model: "llama",
      startupDelay: 2000,
      startupMode: "unready",
      ttft: 150,
      itl: 40,
      maxNumSeqs: 4,
      maxTokens: 32,
      output: "echo",
      seed: 9,
    });
    expect(simOptionsFromArgs([])).toMatchObject({ port: 8000, startupMode: "closed", maxNumSeqs: 256 });
    expect(simOptionsFromArgs(["--help"])).toBeUndefined();
  });

  test.each([
    [["--bogus"], "--bogus"],
    [["--ttft", "150"], "--ttft"],
    [["--startup-delay", "soon"], "--startup-delay"],
    [["--startup-mode", "open"], "--startup-mode"],
    [["--max-num-seqs", "0"], "--max-num-seqs"],
    [["--max-tokens", "-3"], "--max-tokens"],
    [["--port", "70000"], "--port"],
    [["--output", "random"], "--output"],
    [["--log-level", "loud"], "--log-level"],
    [["--max-tokens", "100", "--max-model-len", "50"], "--max-tokens"],
  ])("%j is a ConfigError naming %s", (args, flag) => {
    let err: unknown;
    try {
      simOptionsFromArgs(args);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(flag);
  });
});

describe("coldfront sim (the executable)", () => {
  test("a bad flag exits 2 and names it", async () => {
    const r = start(["sim", "--max-num-seqs", "zero"]);
    expect((await r.exited).code).toBe(2);
    expect(r.stderr()).toContain("--max-num-seqs");
  });

  test("closed startup on a known port: refused, then loaded; logs without prompts; SIGTERM exits 0", async () => {
    const port = await Upstream.reservePort();
    const url = `http://127.0.0.1:${port}`;
    const r = start(["sim", "--port", String(port), "--startup-delay", "1s", "--output", "echo"]);
    const loading = await r.waitForLog((l) => (l.msg === "sim loading" ? l : undefined));
    expect(loading).toMatchObject({ port, startupMode: "closed", startupDelayMs: 1000 });
    const early = await fetch(`${url}/health`).then(
      (res) => res.status,
      (e: Error & { cause?: { code?: string } }) => e.cause?.code,
    );
    expect(early).toBe("ECONNREFUSED");

    const ready = await r.waitForLog((l) => (l.msg === "sim ready" ? l : undefined));
    expect(ready).toMatchObject({ port, url });
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "secret-prompt-words" }] }),
    });
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]?.message.content).toBe("secret-prompt-words");

    r.child.kill("SIGTERM");
    expect(await r.exited).toEqual({ code: 0, signal: null });
    expect(r.lines.join("\n")).not.toContain("secret-prompt-words");
  });
});
