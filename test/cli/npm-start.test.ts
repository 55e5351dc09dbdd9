/**
 * Stopping `npm start` by npm's PID stops coldfront and the simulator it started (README "Try the
 * scale-from-zero loop on one machine"; src/cli/stop-requests.ts says how). npm is run as users
 * run it, with the committed `start` script; only prestart's build is skipped (beforeAll builds),
 * and the config is a copy of examples/local.yaml on free ports with a short load delay.
 */
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { beforeAll, describe, expect, test } from "vitest";
import { useCleanups, waitFor } from "../helpers/app.js";
import { alive, ensureBuilt, ROOT } from "../helpers/cli.js";
import { localDemoConfig } from "../helpers/local-demo.js";

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

interface NpmStart {
  readonly npmPid: number;
  /** Resolves with npm's exit code once it has exited; rejects after a bound. */
  npmExited(): Promise<number | null>;
  readonly coldfrontPid: number;
  readonly simPid: number;
  readonly ports: readonly number[];
  log(): Record<string, unknown>[];
}

/** `npm start` with the demo's simulator started by one answered request. */
async function startDemo(): Promise<NpmStart> {
  const { file, model, ports } = await localDemoConfig({ startupDelay: "500ms" });
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
