/**
 * Stopping `npm start` by npm's PID stops coldfront and the simulator it started (README "Try the
 * scale-from-zero loop on one machine"; src/cli/stop-requests.ts says how). npm is run as users
 * run it, with the committed `start` script; only prestart's build is skipped (beforeAll builds),
 * and the config is a copy of examples/local.yaml on free ports with a short load delay.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { parse, stringify } from "yaml";
import { useCleanups, waitFor } from "../helpers/app.js";
import { alive, ensureBuilt, ROOT } from "../helpers/cli.js";
import { Upstream } from "../helpers/upstream.js";

interface LocalConfig {
  listen: string;
  admin: string;
  targets: {
    upstream: string;
    match: { models: string[] };
    readiness: { process: { command: string[]; url: string } };
  }[];
}

const defer = useCleanups();
beforeAll(() => ensureBuilt());

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // ESRCH: nothing left in it
  }
}

async function demoConfig(): Promise<{ file: string; model: string; ports: number[] }> {
  const config = parse(readFileSync(join(ROOT, "examples/local.yaml"), "utf8")) as LocalConfig;
  const ports = [await Upstream.reservePort(), await Upstream.reservePort(), await Upstream.reservePort()];
  const [listen, admin, sim] = ports as [number, number, number];
  config.listen = `127.0.0.1:${listen}`;
  config.admin = `127.0.0.1:${admin}`;
  const target = config.targets[0];
  if (!target) throw new Error("examples/local.yaml has no target");
  const oldPort = new URL(target.upstream).port;
  target.upstream = target.upstream.replace(oldPort, String(sim));
  const p = target.readiness.process;
  p.url = p.url.replace(oldPort, String(sim));
  p.command = p.command.map((word) => (word === oldPort ? String(sim) : word));
  p.command[p.command.indexOf("--startup-delay") + 1] = "500ms";
  const file = join(mkdtempSync(join(tmpdir(), "coldfront-npm-start-")), "local.yaml");
  writeFileSync(file, stringify(config));
  return { file, model: target.match.models[0] as string, ports };
}

interface NpmStart {
  readonly npmPid: number;
  /** Resolves with npm's exit code once it has exited; rejects after a bound. */
  npmExited(): Promise<number | null>;
  readonly coldfrontPid: number;
  readonly simPid: number;
  readonly ports: number[];
  log(): Record<string, unknown>[];
}

/** `npm start` with the demo's simulator started by one answered request. */
async function startDemo(): Promise<NpmStart> {
  const { file, model, ports } = await demoConfig();
  // Its own process group and session, as a terminal's job would be, so that the test can
  // signal the group the way a Ctrl-C does and remove all of it afterwards.
  const npm = spawn("npm", ["start", "--ignore-scripts", "--", "--config", file], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const npmPid = npm.pid as number;
  const npmExited = async () => {
    await waitFor(() => npm.exitCode !== null || npm.signalCode !== null, "npm to exit", 20_000);
    return npm.exitCode;
  };
  defer(() => killGroup(npmPid));
  let out = "";
  let err = "";
  npm.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  npm.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const log = () =>
    out.split("\n").flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return []; // npm's own "> coldfront@... start" lines
      }
    });
  const find = async (msg: string): Promise<Record<string, unknown>> => {
    await waitFor(
      () => log().some((l) => l.msg === msg),
      `log line "${msg}"; stdout: ${out}\nstderr: ${err}`,
      20_000,
    );
    return log().find((l) => l.msg === msg) as Record<string, unknown>;
  };
  const coldfrontPid = (await find("coldfront started")).pid as number;
  const res = await fetch(`http://127.0.0.1:${ports[0]}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hello there" }] }),
  });
  expect(res.status).toBe(200);
  await res.arrayBuffer();
  const simPid = (await find("starting command")).childPid as number;
  // The simulator leads a process group of its own (src/readiness/child.ts).
  defer(() => killGroup(simPid));
  expect(alive(coldfrontPid) && alive(simPid)).toBe(true);
  return { npmPid, npmExited, coldfrontPid, simPid, ports, log };
}

async function expectAllGone(d: NpmStart): Promise<void> {
  await waitFor(
    () => !alive(d.npmPid) && !alive(d.coldfrontPid) && !alive(d.simPid),
    "npm, coldfront and the simulator to be gone",
    20_000,
  );
  for (const port of d.ports) expect(await portFree(port), `port ${port} free`).toBe(true);
  // A graceful shutdown (DESIGN.md "Shutdown"), not a second signal's exit at once.
  const msgs = d.log().map((l) => l.msg);
  expect(msgs).toContain("stopping command");
  expect(msgs).toContain("coldfront stopped");
  expect(msgs).not.toContain("second signal: exiting now");
}

describe("npm start, stopped by npm's PID", () => {
  // npm forwards these two to its child, and stays until coldfront has stopped.
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal} to npm: coldfront shuts down, stops the simulator, and exits before npm does`, async () => {
      const d = await startDemo();
      process.kill(d.npmPid, signal);
      // coldfront's exit code, passed on: 0 after a clean stop.
      expect(await d.npmExited()).toBe(0);
      expect(alive(d.coldfrontPid)).toBe(false);
      await expectAllGone(d);
    }, 60_000);
  }

  // npm does not forward these: it dies alone, and coldfront sees its parent gone.
  for (const signal of ["SIGHUP", "SIGKILL"] as const) {
    test(`${signal} to npm: coldfront notices its parent gone, shuts down and stops the simulator`, async () => {
      const d = await startDemo();
      process.kill(d.npmPid, signal);
      await expectAllGone(d);
      const stop = d.log().find((l) => l.msg === "shutting down");
      expect(stop?.reason).toBe("parent exited");
    }, 60_000);
  }

  test("SIGINT to the whole group (a Ctrl-C), which npm forwards again: one graceful shutdown", async () => {
    const d = await startDemo();
    process.kill(-d.npmPid, "SIGINT");
    expect(await d.npmExited()).toBe(0);
    await expectAllGone(d);
  }, 60_000);
});
