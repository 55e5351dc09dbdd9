/**
 * Run files of the `process` source (readiness/pidfile.ts) against real processes: what proves a
 * recorded group is still that run, and how it is stopped. The whole story (a SIGKILLed coldfront
 * and the next one) is in process.test.ts.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  groupAlive,
  inspect,
  RUN_ID_ENV,
  RunFile,
  type RunRecord,
  runDirectory,
  startTimeOf,
  stopGroup,
} from "../../src/readiness/pidfile.js";
import { useCleanups, waitFor } from "../helpers/app.js";

const cleanup = useCleanups();
const HAS_PROC = existsSync("/proc/self/stat");

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "coldfront-pidfile-"));
  cleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A process group of its own, as a run is: a leader and one child; killed after the test. The
 * leader creates `<dir>/<runId>.up` once its SIGTERM handler (if any) is in place.
 */
function group(runId: string, o: { ignoreTerm?: boolean; dir?: string } = {}): number {
  const up = JSON.stringify(join(o.dir ?? tempDir(), `${runId}.up`));
  const script = [
    o.ignoreTerm ? "process.on('SIGTERM', () => {});" : "",
    "require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });",
    "setInterval(() => {}, 1000);",
    `require('node:fs').writeFileSync(${up}, '');`,
  ].join("");
  const child = spawn(process.execPath, ["-e", script], {
    detached: true,
    stdio: "ignore",
    env: { ...process.env, [RUN_ID_ENV]: runId },
  });
  const pid = child.pid as number;
  cleanup(() => {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {}
  });
  return pid;
}

/** The pid of a process that has exited: a coldfront that was killed. */
function deadPid(): number {
  return spawnSync(process.execPath, ["-e", ""]).pid as number;
}

function record(pgid: number, runId: string, over: Partial<RunRecord> = {}): RunRecord {
  return {
    target: "llama",
    pgid,
    startTime: startTimeOf(pgid),
    runId,
    command: ["node", "model.js"],
    url: "http://127.0.0.1:8001/health",
    owner: { pid: deadPid(), startTime: "1" },
    startedAt: new Date().toISOString(),
    ...over,
  };
}

describe("RunFile", () => {
  it("is named by target and a hash of command and url, in $XDG_RUNTIME_DIR or the temp dir", () => {
    const dir = tempDir();
    const a = new RunFile("llama", ["node", "m.js"], "http://127.0.0.1:1/health", dir);
    expect(a.path).toMatch(new RegExp(`^${dir}/coldfront-llama-[0-9a-f]{12}\\.pid$`));
    expect(new RunFile("llama", ["node", "m.js"], "http://127.0.0.1:1/health", dir).path).toBe(a.path);
    expect(new RunFile("llama", ["node", "m.js"], "http://127.0.0.1:2/health", dir).path).not.toBe(a.path);
    expect(new RunFile("llama", ["node", "n.js"], "http://127.0.0.1:1/health", dir).path).not.toBe(a.path);
    expect(runDirectory({ XDG_RUNTIME_DIR: dir })).toBe(dir);
    expect(runDirectory({})).toBe(tmpdir());
    expect(runDirectory({ XDG_RUNTIME_DIR: join(dir, "missing") })).toBe(tmpdir());
    expect(runDirectory({ XDG_RUNTIME_DIR: "relative" })).toBe(tmpdir());
  });

  it("writes, reads back, and removes only the run it still records", () => {
    const f = new RunFile("llama", ["x"], "http://u", tempDir());
    expect(f.read()).toBeUndefined();
    const r = record(12345, "run-a");
    expect(f.write(r)).toBe(true);
    expect(f.read()).toEqual(r);
    f.remove("run-b");
    expect(f.read()).toEqual(r);
    f.remove("run-a");
    expect(existsSync(f.path)).toBe(false);
  });

  it("does not trust a symlink or a file that is not a record", () => {
    const dir = tempDir();
    const f = new RunFile("llama", ["x"], "http://u", dir);
    writeFileSync(f.path, "garbage");
    expect(f.read()).toBeUndefined();
    writeFileSync(f.path, JSON.stringify({ ...record(1, "r") }));
    expect(f.read()).toBeUndefined(); // pgid 1: never a run of ours
    rmSync(f.path);
    const elsewhere = join(dir, "planted");
    writeFileSync(elsewhere, JSON.stringify(record(12345, "r")));
    symlinkSync(elsewhere, f.path);
    expect(f.read()).toBeUndefined();
  });
});

describe.skipIf(!HAS_PROC)("inspect", () => {
  it("an alive group whose leader has the recorded start time, its coldfront gone, is an orphan", async () => {
    const pgid = group("run-1");
    await waitFor(() => startTimeOf(pgid) !== null, "the group to start");
    const left = inspect(record(pgid, "run-1"));
    expect(left.state).toBe("orphan");
  });

  it("is left to its coldfront while that coldfront lives", () => {
    const pgid = group("run-2");
    const me = { pid: process.pid, startTime: startTimeOf(process.pid) };
    expect(inspect(record(pgid, "run-2", { owner: me })).state).toBe("owned");
  });

  it("without the leader's start time, is proven by the run id in a member's environment, else unproven", async () => {
    const pgid = group("run-3");
    await waitFor(() => startTimeOf(pgid) !== null, "the group to start");
    // A start time that is not the leader's: as if the pid had been reused.
    expect(inspect(record(pgid, "run-3", { startTime: "1" })).state).toBe("orphan");
    expect(inspect(record(pgid, "another-run", { startTime: "1" })).state).toBe("unproven");
  });

  it("is gone once nothing of the group lives", async () => {
    const pgid = group("run-4");
    process.kill(-pgid, "SIGKILL");
    await waitFor(() => !groupAlive(pgid), "the group to die");
    expect(inspect(record(pgid, "run-4")).state).toBe("gone");
  });
});

describe("stopGroup", () => {
  it("ends a group with SIGTERM, or with SIGKILL after the grace period when SIGTERM is ignored", async () => {
    const dir = tempDir();
    const polite = group("run-5", { dir });
    const stubborn = group("run-6", { ignoreTerm: true, dir });
    // Its SIGTERM handler must be in place before it is signalled, or SIGTERM ends it anyway.
    await waitFor(
      () => existsSync(join(dir, "run-6.up")) && existsSync(join(dir, "run-5.up")),
      "both groups up",
    );
    expect(await stopGroup(polite, 5000)).toBe("term");
    expect(groupAlive(polite)).toBe(false);
    expect(await stopGroup(stubborn, 200)).toBe("kill");
    expect(groupAlive(stubborn)).toBe(false);
  });
});
