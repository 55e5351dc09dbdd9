/**
 * The `process` readiness source (issue 3; DESIGN.md "Readiness sources") against a real child:
 * test/fixtures/fake-model.mjs, a tiny model server run with this same Node. Most cases go
 * through the real app (a held request starts the command and is answered once it is ready);
 * the orphan cases run the built CLI and signal it as a terminal or a kubelet would.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import { beforeAll, describe, expect, test } from "vitest";
import type { App } from "../../src/app.js";
import { ProcessSource, redact } from "../../src/readiness/process.js";
import { errorBody, metricValue, startTestApp, testLogger, useCleanups, waitFor } from "../helpers/app.js";
import { alive, ensureBuilt, type Running, runCli } from "../helpers/cli.js";
import { Upstream } from "../helpers/upstream.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/fake-model.mjs", import.meta.url));
const defer = useCleanups();

function readPids(file: string): number[] {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map(Number);
  } catch {
    return [];
  }
}

/** A temp dir for pid files, removed after the test, with every pid in it killed if alive. */
function workdir(): { dir: string; file(name: string): string } {
  const dir = mkdtempSync(join(tmpdir(), "coldfront-process-"));
  defer(() => {
    for (const name of ["pid", "starts", "grandchild"]) {
      for (const pid of readPids(join(dir, name))) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, file: (name) => join(dir, name) };
}

/** Log lines of the app, parsed. */
function captureLog(): { lines: Record<string, unknown>[]; log: ReturnType<typeof testLogger> } {
  const lines: Record<string, unknown>[] = [];
  const log = Fastify({
    logger: { level: "info", stream: { write: (line: string) => lines.push(JSON.parse(line)) } },
  }).log;
  return { lines, log };
}

interface ProcessTarget {
  readonly app: App;
  readonly port: number;
  readonly files: ReturnType<typeof workdir>;
  readonly lines: Record<string, unknown>[];
  /** The readiness part of the target's /status. */
  status(): Promise<Record<string, unknown>>;
  ready(): boolean;
  post(path?: string, body?: unknown): Promise<Response>;
}

/**
 * coldfront with one target "llama" whose readiness runs the fixture with `args` (given the test's
 * temp dir, for files of its own).
 */
async function startProcessTarget(
  args: string[] | ((file: (name: string) => string) => string[]) = [],
  process_: Record<string, unknown> = {},
  env: Record<string, string> = {},
): Promise<ProcessTarget> {
  const files = workdir();
  const port = await Upstream.reservePort();
  const { lines, log } = captureLog();
  const app = await startTestApp(
    {
      targets: [
        {
          name: "llama",
          upstream: `http://127.0.0.1:${port}`,
          readiness: {
            process: {
              command: [
                process.execPath,
                FIXTURE,
                "--port",
                String(port),
                "--pidfile",
                files.file("pid"),
                "--starts",
                files.file("starts"),
                ...(typeof args === "function" ? args(files.file) : args),
              ],
              url: `http://127.0.0.1:${port}/health`,
              env,
              idleTimeout: "1m",
              startTimeout: "20s",
              stopGracePeriod: "5s",
              probeInterval: "20ms",
              ...process_,
            },
          },
        },
      ],
    },
    { logger: log },
  );
  defer(() => app.close());
  const gate = () => app.hub.get("llama");
  return {
    app,
    port,
    files,
    lines,
    status: async () => {
      const body = (await (await fetch(`${app.adminUrl}/status`)).json()) as {
        targets: Record<string, { readiness: Record<string, unknown> }>;
      };
      return body.targets.llama?.readiness as Record<string, unknown>;
    },
    ready: () => gate()?.ready ?? false,
    post: (path = "/v1/chat/completions", body = { model: "m" }) =>
      fetch(`${app.clientUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
  };
}

interface Echo {
  pid: number;
  method: string;
  url: string;
  body: string;
  greeting: string | null;
}

describe("process readiness: start on demand and release", () => {
  test("nothing runs before the first held request; that request starts the command and is answered once it is ready", async () => {
    const secret = "s3cret-greeting-value";
    const t = await startProcessTarget(
      ["--delay", "300", "--long-line", "10000"],
      {},
      {
        FAKE_MODEL_GREETING: secret,
      },
    );
    // A stopped command is a known state: synced (coldfront ready), target cold, nothing spawned.
    expect((await fetch(`${t.app.adminUrl}/readyz`)).status).toBe(200);
    const before = await t.status();
    expect(before).toMatchObject({ kind: "process", synced: true, state: "stopped", pid: null, restarts: 0 });
    expect(before.lastExit).toBeNull();
    expect(readPids(t.files.file("pid"))).toEqual([]);
    // Non-inference traffic does not wake it.
    const get = await fetch(`${t.app.clientUrl}/v1/models`);
    expect(get.status).toBe(503);
    expect((await errorBody(get)).error.type).toBe("target_cold");
    expect(readPids(t.files.file("pid"))).toEqual([]);

    const res = await t.post("/v1/chat/completions", { model: "m", messages: [] });
    expect(res.status).toBe(200);
    expect(Number(res.headers.get("x-coldfront-held-ms"))).toBeGreaterThan(0);
    const echo = (await res.json()) as Echo;
    const [pid] = readPids(t.files.file("pid"));
    expect(echo.pid).toBe(pid);
    expect(echo.body).toBe(JSON.stringify({ model: "m", messages: [] }));
    expect(echo.greeting).toBe(secret); // env reaches the command
    expect(alive(pid as number)).toBe(true);
    expect(await t.status()).toMatchObject({ state: "ready", pid, restarts: 0 });
    expect(t.ready()).toBe(true);

    // A second request goes straight through: no held header, same process.
    const warm = await t.post();
    expect(warm.headers.get("x-coldfront-held-ms")).toBeNull();
    expect(((await warm.json()) as Echo).pid).toBe(pid);

    // Lifecycle and the command's own output are in coldfront's log, with the target name.
    const starting = t.lines.find((l) => l.msg === "starting command");
    expect(starting).toMatchObject({ target: "llama", childPid: pid, env: ["FAKE_MODEL_GREETING"] });
    expect(starting?.command).toContain(FIXTURE);
    expect(t.lines.find((l) => l.msg === "command ready")).toMatchObject({ target: "llama", childPid: pid });
    const fromChild = t.lines.filter((l) => l.target === "llama" && l.childPid === pid && l.stream);
    expect(fromChild).toContainEqual(
      expect.objectContaining({ stream: "stdout", msg: `fake-model starting pid=${pid}` }),
    );
    expect(fromChild).toContainEqual(
      expect.objectContaining({ stream: "stderr", msg: "fake-model loading weights" }),
    );
    // A pino line from the command: its msg, not the JSON document.
    expect(fromChild).toContainEqual(
      expect.objectContaining({ stream: "stdout", msg: `fake-model listening on 127.0.0.1:${t.port}` }),
    );
    // A huge line is cut, not carried whole.
    const long = fromChild.find((l) => String(l.msg).startsWith("xxxx"));
    expect(long).toBeDefined();
    expect(String(long?.msg).length).toBeLessThan(10_000);
    // Env values never reach the log.
    expect(JSON.stringify(t.lines)).not.toContain(secret);
  });

  test("a burst held during the start is answered in full by one run", async () => {
    const t = await startProcessTarget(["--delay", "300"]);
    const calls = Array.from({ length: 10 }, (_, i) => t.post("/v1/chat/completions", { i }));
    const results = await Promise.all(calls);
    const bodies = await Promise.all(results.map((r) => r.json() as Promise<Echo>));
    for (const [i, r] of results.entries()) {
      expect(r.status).toBe(200);
      expect(JSON.parse(bodies[i]?.body ?? "{}")).toEqual({ i });
    }
    expect(new Set(bodies.map((b) => b.pid)).size).toBe(1);
    expect(readPids(t.files.file("starts"))).toHaveLength(1);
  });
});

describe("process readiness: idle stop", () => {
  test("after idleTimeout without traffic the command is stopped and the target is cold; the next request starts it again", async () => {
    const t = await startProcessTarget([], { idleTimeout: "300ms" });
    const first = await t.post();
    expect(first.status).toBe(200);
    const pid1 = ((await first.json()) as Echo).pid;

    await waitFor(async () => (await t.status()).state === "stopped", "idle stop", 10_000);
    await waitFor(() => !alive(pid1), "the idle command to be gone");
    expect(() => process.kill(pid1, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
    expect(t.ready()).toBe(false);
    expect(await metricValue(t.app, 'coldfront_target_ready{target="llama"}')).toBe(0);
    // It handled SIGTERM and exited on its own: code 0, no restart.
    expect(await t.status()).toMatchObject({ pid: null, restarts: 0, lastExit: { code: 0, signal: null } });
    expect(t.lines.map((l) => l.msg)).toContain("no traffic for idleTimeout; stopping command");

    const again = await t.post();
    expect(again.status).toBe(200);
    expect(Number(again.headers.get("x-coldfront-held-ms"))).toBeGreaterThan(0);
    const pid2 = ((await again.json()) as Echo).pid;
    expect(pid2).not.toBe(pid1);
    expect(readPids(t.files.file("starts"))).toEqual([pid1, pid2]);
  });

  test("traffic and a request in flight keep the command running past idleTimeout", async () => {
    const t = await startProcessTarget([], { idleTimeout: "1500ms" });
    const pids = new Set<number>();
    // About 2 s of requests 100 ms apart: never 1.5 s without one.
    for (let i = 0; i < 20; i++) {
      const res = await t.post();
      pids.add(((await res.json()) as Echo).pid);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(pids.size).toBe(1);
    // One generation longer than idleTimeout: in flight counts as traffic.
    const slow = await t.post("/v1/chat/completions?hold=2500");
    expect(slow.status).toBe(200);
    pids.add(((await slow.json()) as Echo).pid);
    expect(pids.size).toBe(1);
    expect(readPids(t.files.file("starts"))).toHaveLength(1);
    expect((await t.status()).state).toBe("ready");
  });

  test("a command that ignores SIGTERM is killed after stopGracePeriod", async () => {
    const t = await startProcessTarget(["--ignore-sigterm"], {
      idleTimeout: "200ms",
      stopGracePeriod: "300ms",
    });
    const pid = ((await (await t.post()).json()) as Echo).pid;
    await waitFor(async () => (await t.status()).state === "stopped", "the stop to finish", 10_000);
    expect(alive(pid)).toBe(false);
    expect((await t.status()).lastExit).toEqual({ code: null, signal: "SIGKILL" });
    expect(t.lines.map((l) => l.msg)).toContain("fake-model got SIGTERM");
    expect(t.lines.map((l) => l.msg)).toContain("command ignored SIGTERM for stopGracePeriod; killed");
  });
});

describe("process readiness: failures", () => {
  test("a crash while requests wait: restarted with backoff, and the held request is still answered", async () => {
    const t = await startProcessTarget((file) => [
      "--once-file",
      file("once"),
      "--first-crash",
      "--delay",
      "100",
    ]);
    const res = await t.post("/v1/chat/completions", { id: "waiting" });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    expect(JSON.parse(echo.body)).toEqual({ id: "waiting" });
    const [crashed, second] = readPids(t.files.file("starts"));
    expect(echo.pid).toBe(second);
    expect(alive(crashed as number)).toBe(false);
    expect(await t.status()).toMatchObject({ state: "ready", restarts: 1, lastExit: { code: 3 } });
    const msgs = t.lines.map((l) => l.msg);
    expect(msgs.indexOf("command exited")).toBeLessThan(
      msgs.indexOf("requests are waiting; restarting command"),
    );
    expect(t.lines.find((l) => l.msg === "requests are waiting; restarting command")).toMatchObject({
      inMs: 500,
    });
  });

  test("a crash with nothing waiting: it stays stopped, leaves nothing behind, and the next request starts it", async () => {
    const t = await startProcessTarget();
    const files = t.files;
    const res = await t.post("/crash");
    expect(res.status).toBe(200);
    const pid = ((await res.json()) as Echo).pid;
    await waitFor(async () => (await t.status()).state === "stopped", "the crash to be seen", 10_000);
    expect(await t.status()).toMatchObject({ restarts: 0, lastExit: { code: 1 } });
    expect(t.ready()).toBe(false);
    expect(alive(pid)).toBe(false);
    // Past the first backoff step, still nothing restarted it.
    await new Promise((r) => setTimeout(r, 800));
    expect(readPids(files.file("starts"))).toEqual([pid]);
    expect((await t.status()).state).toBe("stopped");

    const next = await t.post();
    expect(next.status).toBe(200);
    expect(((await next.json()) as Echo).pid).not.toBe(pid);
  });

  test("whatever the command started dies with it when it crashes", async () => {
    const t = await startProcessTarget((file) => ["--grandchild-pidfile", file("grandchild")]);
    const res = await t.post("/crash");
    const pid = ((await res.json()) as Echo).pid;
    const [grandchild] = readPids(t.files.file("grandchild"));
    expect(grandchild).toBeGreaterThan(0);
    await waitFor(() => !alive(pid), "the command to crash", 10_000);
    await waitFor(() => !alive(grandchild as number), "its child to be killed with it", 10_000);
  });

  test("startTimeout exceeded: the command is killed and started again", async () => {
    const t = await startProcessTarget((file) => ["--once-file", file("once"), "--first-delay", "60000"], {
      startTimeout: "800ms",
    });
    const res = await t.post();
    expect(res.status).toBe(200);
    const [slow, second] = readPids(t.files.file("starts"));
    expect(((await res.json()) as Echo).pid).toBe(second);
    expect(alive(slow as number)).toBe(false);
    expect(await t.status()).toMatchObject({ state: "ready", restarts: 1, lastExit: { code: 0 } });
    expect(t.lines.map((l) => l.msg)).toContain(
      "command did not become ready within startTimeout; stopping it",
    );
  });

  test("readiness drops when the running command keeps failing its health check", async () => {
    const t = await startProcessTarget(["--unhealthy-after", "200"]);
    const res = await t.post();
    const pid = ((await res.json()) as Echo).pid;
    await waitFor(() => !t.ready(), "readiness to drop", 15_000);
    expect(alive(pid)).toBe(true);
    expect(await t.status()).toMatchObject({ state: "starting", pid });
    expect(
      t.lines.find((l) => l.msg === "command stopped answering its health check; not ready"),
    ).toMatchObject({
      target: "llama",
      failures: 3,
    });
  });
});

describe("ProcessSource", () => {
  const options = (command: string[], port: number) => ({
    command,
    env: {},
    url: `http://127.0.0.1:${port}/health`,
    idleTimeout: 60_000,
    startTimeout: 20_000,
    stopGracePeriod: 5000,
    probeInterval: 20,
  });

  test("stop() ends the run, waits for its exit, and removes its process-exit hook", async () => {
    const files = workdir();
    const port = await Upstream.reservePort();
    const source = new ProcessSource(
      "llama",
      options([process.execPath, FIXTURE, "--port", String(port), "--pidfile", files.file("pid")], port),
      testLogger(),
    );
    defer(() => source.stop());
    // Counted after the logger exists (pino may hook process exit itself).
    const hooks = process.listenerCount("exit");
    const changes: boolean[] = [];
    source.onChange((r) => changes.push(r));
    await source.start();
    expect(source.synced).toBe(true);
    source.demand({ pending: 1, inFlight: 0 });
    await waitFor(() => source.ready, "ready", 10_000);
    const pid = source.status().pid as number;
    expect(process.listenerCount("exit")).toBe(hooks + 1);
    await source.stop();
    expect(alive(pid)).toBe(false);
    expect(process.listenerCount("exit")).toBe(hooks);
    expect(source.ready).toBe(false);
    expect(source.status()).toMatchObject({ state: "stopped", pid: null });
    expect(changes).toEqual([true, false]);
    await source.stop(); // idempotent
    // Stopped for good: demand no longer starts anything.
    source.demand({ pending: 2, inFlight: 0 });
    expect(source.status()).toMatchObject({ state: "stopped", pid: null });
  });

  test("a crash while ready with requests still waiting starts exactly one new run, even when the gate reacts at once", async () => {
    const files = workdir();
    const port = await Upstream.reservePort();
    const source = new ProcessSource(
      "llama",
      options([process.execPath, FIXTURE, "--port", String(port), "--starts", files.file("starts")], port),
      testLogger(),
    );
    defer(() => source.stop());
    // As the gate does: demand() is called again from inside the ready listener.
    const demand = { pending: 2, inFlight: 1 };
    source.onChange(() => source.demand(demand));
    await source.start();
    source.demand(demand);
    await waitFor(() => source.ready, "ready", 10_000);
    const [first] = readPids(files.file("starts"));
    process.kill(first as number, "SIGKILL");
    await waitFor(() => source.ready && source.status().pid !== first, "ready again", 10_000);
    // Well past the first backoff step: nothing else was started.
    await new Promise((r) => setTimeout(r, 1200));
    const starts = readPids(files.file("starts"));
    expect(starts).toHaveLength(2);
    expect(source.status()).toMatchObject({
      state: "ready",
      pid: starts[1],
      restarts: 1,
      lastExit: { code: null, signal: "SIGKILL" },
    });
  });

  test("a command that cannot be spawned is retried with backoff while demanded, and stop() clears the retry", async () => {
    const source = new ProcessSource("llama", options(["/nonexistent/coldfront-model"], 9), testLogger());
    await source.start();
    source.demand({ pending: 1, inFlight: 0 });
    await waitFor(() => source.status().state === "backoff", "backoff after the spawn error");
    expect(String((source.status().lastExit as { error: string }).error)).toContain("ENOENT");
    await waitFor(() => (source.status().restarts as number) >= 1, "a retry");
    // Demand gone: the pending retry does not start anything.
    source.demand({ pending: 0, inFlight: 0 });
    await waitFor(() => source.status().state === "stopped", "stopped without demand", 10_000);
    source.demand({ pending: 1, inFlight: 0 });
    await waitFor(() => source.status().state === "backoff", "backoff again");
    await source.stop();
    expect(source.status().state).toBe("stopped");
  });

  test("secret flag values are left out of the logged command line", () => {
    expect(
      redact([
        "vllm",
        "serve",
        "m",
        "--api-key",
        "sk-1",
        "--hf-token=hf_x",
        "--max-num-batched-tokens",
        "8192",
      ]),
    ).toEqual([
      "vllm",
      "serve",
      "m",
      "--api-key",
      "***",
      "--hf-token=***",
      "--max-num-batched-tokens",
      "8192",
    ]);
  });
});

describe("process readiness: no orphans when coldfront exits", () => {
  beforeAll(() => ensureBuilt());

  async function startCli(extraArgs: string[], stopGracePeriod = "5s") {
    const files = workdir();
    const port = await Upstream.reservePort();
    const command = [
      process.execPath,
      FIXTURE,
      "--port",
      String(port),
      "--pidfile",
      files.file("pid"),
      "--grandchild-pidfile",
      files.file("grandchild"),
      ...extraArgs,
    ];
    const config = join(files.dir, "config.yaml");
    writeFileSync(
      config,
      [
        "listen: 127.0.0.1:0",
        "admin: 127.0.0.1:0",
        "shutdown: {gracePeriod: 1s}",
        "targets:",
        "  - name: llama",
        `    upstream: http://127.0.0.1:${port}`,
        "    readiness:",
        "      process:",
        `        command: ${JSON.stringify(command)}`,
        `        url: http://127.0.0.1:${port}/health`,
        "        probeInterval: 20ms",
        `        stopGracePeriod: ${stopGracePeriod}`,
        "",
      ].join("\n"),
    );
    const r: Running = runCli(["proxy", "--config", config]);
    defer(() => r.kill());
    const base = await r.waitForLog((l) =>
      l.msg === "coldfront started" ? (l.listen as string) : undefined,
    );
    const res = await fetch(`${base}/v1/chat/completions`, { method: "POST", body: "{}" });
    expect(res.status).toBe(200);
    const pid = ((await res.json()) as Echo).pid;
    const [grandchild] = readPids(files.file("grandchild"));
    expect(readPids(files.file("pid"))).toEqual([pid]);
    expect(alive(pid)).toBe(true);
    expect(alive(grandchild as number)).toBe(true);
    // The command's output reached coldfront's log, tagged with the target.
    await r.waitForLog((l) =>
      l.target === "llama" && l.stream === "stdout" && String(l.msg).startsWith("fake-model listening")
        ? true
        : undefined,
    );
    return { r, pid, grandchild: grandchild as number };
  }

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal} to coldfront stops the command and everything it started, then coldfront exits 0`, async () => {
      const { r, pid, grandchild } = await startCli([]);
      r.child.kill(signal);
      expect(await r.exited).toEqual({ code: 0, signal: null });
      await waitFor(() => !alive(pid) && !alive(grandchild), "the command and its child to be gone", 10_000);
      expect(r.lines.some((l) => l.includes('"msg":"stopping command"'))).toBe(true);
    });
  }

  test("coldfront exiting without a clean stop (a second signal) still kills the command", async () => {
    // The command ignores SIGTERM and the grace period is long: only the exit hook can end it.
    const { r, pid } = await startCli(["--ignore-sigterm"], "60s");
    r.child.kill("SIGTERM");
    await r.waitForLog((l) => (l.msg === "stopping command" ? true : undefined));
    await r.waitForLog((l) => (l.msg === "fake-model got SIGTERM" ? true : undefined));
    expect(alive(pid)).toBe(true);
    r.child.kill("SIGINT");
    expect((await r.exited).code).toBe(1);
    await waitFor(() => !alive(pid), "the command to be killed by the exit hook", 10_000);
  });

  test("a run left behind by a SIGKILLed coldfront is stopped by the next coldfront before its own run starts", async () => {
    const files = workdir();
    // The run files go here, not to the user's $XDG_RUNTIME_DIR (readiness/pidfile.ts).
    const runDir = join(files.dir, "run");
    mkdirSync(runDir);
    const port = await Upstream.reservePort();
    const command = [
      process.execPath,
      FIXTURE,
      "--port",
      String(port),
      "--starts",
      files.file("starts"),
      "--grandchild-pidfile",
      files.file("grandchild"),
    ];
    const config = join(files.dir, "config.yaml");
    writeFileSync(
      config,
      [
        "listen: 127.0.0.1:0",
        "admin: 127.0.0.1:0",
        "targets:",
        "  - name: llama",
        `    upstream: http://127.0.0.1:${port}`,
        "    readiness:",
        "      process:",
        `        command: ${JSON.stringify(command)}`,
        `        url: http://127.0.0.1:${port}/health`,
        "        probeInterval: 20ms",
        "        stopGracePeriod: 5s",
        "",
      ].join("\n"),
    );
    // Whatever a failed assertion leaves: every run's group, and the grandchildren.
    const grandchildren: number[] = [];
    defer(() => {
      for (const pid of [...readPids(files.file("starts")), ...grandchildren]) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {}
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    });
    const start = async () => {
      const r = runCli(["proxy", "--config", config], { XDG_RUNTIME_DIR: runDir });
      defer(() => r.kill());
      const base = await r.waitForLog((l) =>
        l.msg === "coldfront started" ? (l.listen as string) : undefined,
      );
      return { r, base };
    };
    const post = async (base: string) => {
      const res = await fetch(`${base}/v1/chat/completions`, { method: "POST", body: "{}" });
      expect(res.status).toBe(200);
      return ((await res.json()) as Echo).pid;
    };
    const runFiles = () => readdirSync(runDir).filter((f) => /^coldfront-llama-[0-9a-f]{12}\.pid$/.test(f));
    const recorded = () => JSON.parse(readFileSync(join(runDir, runFiles()[0] as string), "utf8"));

    const first = await start();
    const orphan = await post(first.base);
    const [grandchild] = readPids(files.file("grandchild"));
    grandchildren.push(grandchild as number);
    expect(runFiles()).toHaveLength(1);
    expect(recorded()).toMatchObject({ target: "llama", pgid: orphan, owner: { pid: first.r.child.pid } });

    // SIGKILL: no exit hook runs, and the run is still there. That is what the run file is for.
    first.r.child.kill("SIGKILL");
    await first.r.exited;
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(orphan)).toBe(true);
    expect(alive(grandchild as number)).toBe(true);

    const second = await start();
    const stopped = await second.r.waitForLog((l) =>
      l.msg === "stopped the run left behind" ? l : undefined,
    );
    expect(stopped).toMatchObject({ target: "llama", pgid: orphan, signal: "SIGTERM" });
    // Gone, with what it started, before this coldfront starts anything.
    expect(alive(orphan)).toBe(false);
    expect(alive(grandchild as number)).toBe(false);
    const fresh = await post(second.base);
    expect(fresh).not.toBe(orphan);
    const order = (msg: string) => second.r.lines.findIndex((l) => l.includes(`"msg":"${msg}"`));
    expect(
      order("found a run left behind by a coldfront that did not exit cleanly; stopping it"),
    ).toBeGreaterThanOrEqual(0);
    expect(order("stopped the run left behind")).toBeLessThan(order("starting command"));
    expect(recorded()).toMatchObject({ pgid: fresh, owner: { pid: second.r.child.pid } });

    // A clean stop ends the run and removes its file.
    second.r.child.kill("SIGTERM");
    expect(await second.r.exited).toEqual({ code: 0, signal: null });
    await waitFor(() => !alive(fresh), "the new run to be stopped");
    expect(runFiles()).toEqual([]);
  });

  test("a bare `node` in the command runs coldfront's own Node, not the first `node` on PATH", async () => {
    const files = workdir();
    // A PATH whose first `node` is not Node at all (as a system Node 20 would be for coldfront).
    const shims = join(files.dir, "bin");
    mkdirSync(shims);
    writeFileSync(join(shims, "node"), '#!/bin/sh\necho "wrong node"\nexit 1\n');
    chmodSync(join(shims, "node"), 0o755);
    const PATH = `${shims}:${process.env.PATH ?? ""}`;
    const port = await Upstream.reservePort();
    const script =
      "require('node:http').createServer((q, s) => s.end(JSON.stringify({ version: process.version, " +
      "execPath: process.execPath }))).listen(Number(process.argv[1]), '127.0.0.1')";
    const config = join(files.dir, "config.yaml");
    writeFileSync(
      config,
      [
        "listen: 127.0.0.1:0",
        "admin: 127.0.0.1:0",
        // With the wrong node the command never answers: a 503 within the test, not a hang.
        "limits: {holdTimeout: 10s}",
        "targets:",
        "  - name: llama",
        `    upstream: http://127.0.0.1:${port}`,
        "    readiness:",
        "      process:",
        `        command: ${JSON.stringify(["node", "-e", script, String(port)])}`,
        `        url: http://127.0.0.1:${port}/health`,
        "        probeInterval: 20ms",
        "",
      ].join("\n"),
    );
    const r = runCli(["proxy", "--config", config], { PATH, XDG_RUNTIME_DIR: files.dir });
    defer(() => r.kill());
    const base = await r.waitForLog((l) =>
      l.msg === "coldfront started" ? (l.listen as string) : undefined,
    );
    const res = await fetch(`${base}/v1/chat/completions`, { method: "POST", body: "{}" });
    expect(res.status).toBe(200);
    // coldfront runs on this test's Node (runCli uses process.execPath), so its child must too.
    expect(await res.json()).toEqual({ version: process.version, execPath: process.execPath });
    r.child.kill("SIGTERM");
    expect((await r.exited).code).toBe(0);
  });
});
