/**
 * One run of a `process` command (readiness/child.ts): which Node a bare `node` runs, and the
 * end-of-run callback the run file relies on.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ChildGroup, commandFile } from "../../src/readiness/child.js";
import { useCleanups, waitFor } from "../helpers/app.js";

const cleanup = useCleanups();

/** A PATH whose first `node` is a shell script that is not Node (a too-old system Node, say). */
function shimmedPath(): string {
  const dir = mkdtempSync(join(tmpdir(), "coldfront-child-"));
  cleanup(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "node"), '#!/bin/sh\necho "wrong node"\nexit 1\n');
  chmodSync(join(dir, "node"), 0o755);
  return `${dir}:${process.env.PATH ?? ""}`;
}

async function run(command: string[], env: Record<string, string>) {
  const lines: string[] = [];
  let ended = 0;
  const g = new ChildGroup({
    command,
    cwd: undefined,
    env,
    onLine: (_s, l) => lines.push(l),
    onEnd: () => ended++,
  });
  cleanup(() => g.signal("SIGKILL"));
  const exit = await g.exited;
  // The output pipes may deliver their last line just after the exit is reported.
  return { exit, lines, ended: () => ended };
}

describe("ChildGroup", () => {
  it("runs a bare `node` on coldfront's own Node, whatever PATH leads to", async () => {
    const PATH = shimmedPath();
    // The shim is what PATH finds: a lookup by name would run it.
    expect(spawnSync("node", ["-v"], { env: { PATH }, encoding: "utf8" }).stdout.trim()).toBe("wrong node");
    const r = await run(["node", "-p", "process.version + ' ' + process.execPath"], { PATH });
    expect(r.exit).toEqual({ code: 0, signal: null });
    await waitFor(() => r.lines.length > 0, "its output");
    expect(r.lines).toEqual([`${process.version} ${process.execPath}`]);
  });

  it("takes any other first word as written, through PATH", async () => {
    const r = await run(["sh", "-c", "node -v"], { PATH: shimmedPath() });
    await waitFor(() => r.lines.length > 0, "its output");
    expect(r.lines).toEqual(["wrong node"]);
    expect(commandFile("node")).toBe(process.execPath);
    expect(commandFile("nodejs")).toBe("nodejs");
    expect(commandFile("/usr/bin/node")).toBe("/usr/bin/node");
  });

  it("calls onEnd once when the run is over, and when it could not start at all", async () => {
    expect((await run([process.execPath, "-e", ""], {})).ended()).toBe(1);
    const failed = await run(["/nonexistent/coldfront-model"], {});
    expect(failed.exit.error).toMatch(/ENOENT/);
    expect(failed.ended()).toBe(1);
  });
});
