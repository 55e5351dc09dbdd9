/**
 * The record of a `process` source's run on disk, so that a run outlives no coldfront (DESIGN.md
 * "Readiness sources": process). A run is killed with its group when coldfront stops it, when
 * its leader exits, or from the exit hook (child.ts); a SIGKILLed coldfront does none of these,
 * and the next coldfront would find the old command still bound to its port and answering its
 * probes. So each run is recorded in a file, and the next start stops what the file proves is
 * that run before it starts its own.
 *
 * Where: `$XDG_RUNTIME_DIR` (per user, mode 0700, emptied at logout and boot, the place the XDG
 * Base Directory spec gives runtime files), else os.tmpdir(); the name is
 * `coldfront-<target>-<12 hex of sha256 over the command and url>.pid`, so a changed command
 * or port is another run, and two targets never share a file.
 *
 * What proves a recorded group is still that run, not a stranger who got the pid since: the
 * group leader alive with the same start time (`/proc/<pid>/stat` field 22, fixed at fork), or,
 * once the leader is gone, a live member of the group whose environment carries the run's
 * `COLDFRONT_RUN_ID`. A run whose coldfront (`owner`, by pid and start time) is still alive is
 * that coldfront's and is left alone. Without /proc (not Linux) nothing can be proven, and
 * nothing is killed: a warning says what may still run.
 *
 * A file not owned by this user, or a symlink, is never read: in a shared /tmp, anyone could
 * plant one naming someone else's processes.
 */
import { createHash, randomUUID } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";

/** The variable every process of a run inherits, naming the run. */
export const RUN_ID_ENV = "COLDFRONT_RUN_ID";

const HAS_PROC = existsSync("/proc/self/stat");

export interface RunRecord {
  readonly target: string;
  /** The process group: its leader's pid. */
  readonly pgid: number;
  /** The leader's start time (clock ticks after boot), null without /proc. */
  readonly startTime: string | null;
  /** The value of COLDFRONT_RUN_ID in the run's environment. */
  readonly runId: string;
  /** The command line, secrets redacted: for the log line that reports what was stopped. */
  readonly command: readonly string[];
  readonly url: string;
  /** The coldfront that started it. */
  readonly owner: { readonly pid: number; readonly startTime: string | null };
  readonly startedAt: string;
}

/** The directory of run files: $XDG_RUNTIME_DIR when set (absolute, existing), else the temp dir. */
export function runDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR;
  return xdg && isAbsolute(xdg) && existsSync(xdg) ? xdg : tmpdir();
}

/** A fresh id for a run, for COLDFRONT_RUN_ID. */
export function newRunId(): string {
  return randomUUID();
}

/** One target's run file. Every method is synchronous (the exit hook needs that) and never throws. */
export class RunFile {
  readonly path: string;

  constructor(target: string, command: readonly string[], url: string, dir = runDirectory()) {
    const hash = createHash("sha256")
      .update(JSON.stringify([command, url]))
      .digest("hex")
      .slice(0, 12);
    this.path = join(dir, `coldfront-${target}-${hash}.pid`);
  }

  /** Records a run; false (and nothing written) when the directory refuses. */
  write(record: RunRecord): boolean {
    const tmp = `${this.path}.${process.pid}.tmp`;
    try {
      // Written whole, then renamed: a reader never sees half a record.
      writeFileSync(tmp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
      renameSync(tmp, this.path);
      return true;
    } catch {
      rmSync(tmp, { force: true });
      return false;
    }
  }

  /** The recorded run, or undefined: no file, not ours to trust, or not a record. */
  read(): RunRecord | undefined {
    try {
      const st = lstatSync(this.path);
      if (!st.isFile() || (process.getuid && st.uid !== process.getuid())) return undefined;
      const r = JSON.parse(readFileSync(this.path, "utf8")) as Partial<RunRecord>;
      if (!Number.isInteger(r.pgid) || (r.pgid as number) <= 1 || typeof r.runId !== "string")
        return undefined;
      if (!r.owner || !Number.isInteger(r.owner.pid)) return undefined;
      return r as RunRecord;
    } catch {
      return undefined;
    }
  }

  /** Removes the file; with `runId`, only while it still records that run. */
  remove(runId?: string): void {
    try {
      if (runId !== undefined && this.read()?.runId !== runId) return;
      rmSync(this.path, { force: true });
    } catch {}
  }
}

/** What a recorded run is now. */
export type Leftover =
  /** Nothing of it runs any more. */
  | { readonly state: "gone" }
  /** Its coldfront is still alive: that coldfront's to stop. */
  | { readonly state: "owned" }
  /** Something runs in its group, but nothing proves it is that run (or there is no /proc). */
  | { readonly state: "unproven"; readonly members: readonly number[] }
  /** Proven to be the run, its coldfront gone: to be stopped. */
  | { readonly state: "orphan"; readonly members: readonly number[] };

/** Looks at a recorded run through /proc (see the top of this file). */
export function inspect(record: RunRecord): Leftover {
  if (!HAS_PROC) return groupAlive(record.pgid) ? { state: "unproven", members: [] } : { state: "gone" };
  const owner = stat(record.owner.pid);
  if (owner && !owner.zombie && owner.startTime === record.owner.startTime) return { state: "owned" };
  const members = groupMembers(record.pgid);
  if (members.length === 0) return { state: "gone" };
  const leader = stat(record.pgid);
  const leaderIsIt =
    leader !== undefined &&
    !leader.zombie &&
    leader.pgrp === record.pgid &&
    record.startTime !== null &&
    leader.startTime === record.startTime;
  if (leaderIsIt || members.some((pid) => carriesRunId(pid, record.runId)))
    return { state: "orphan", members };
  return { state: "unproven", members };
}

/** True while any live (not zombie) process is in group `pgid`. */
export function groupAlive(pgid: number): boolean {
  if (HAS_PROC) return groupMembers(pgid).length > 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Signals group `pgid`; false when it is empty (or not ours to signal). */
export function signalGroup(pgid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops group `pgid` as a run is stopped: SIGTERM, then SIGKILL after `grace` ms. Resolves with
 * how it ended: "term" (gone within the grace), "kill" (gone after SIGKILL), or "stuck" (still
 * there `killWait` ms after SIGKILL: in uninterruptible sleep, or not ours to signal).
 */
export async function stopGroup(
  pgid: number,
  grace: number,
  killWait = 2000,
): Promise<"term" | "kill" | "stuck"> {
  const gone = async (ms: number): Promise<boolean> => {
    const end = performance.now() + ms;
    while (groupAlive(pgid)) {
      if (performance.now() >= end) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  };
  signalGroup(pgid, "SIGTERM");
  if (await gone(grace)) return "term";
  signalGroup(pgid, "SIGKILL");
  return (await gone(killWait)) ? "kill" : "stuck";
}

/** The start time of `pid` (clock ticks after boot), null without /proc or once it is gone. */
export function startTimeOf(pid: number): string | null {
  return stat(pid)?.startTime ?? null;
}

interface Stat {
  readonly pgrp: number;
  readonly startTime: string;
  readonly zombie: boolean;
}

/** proc(5): `pid (comm) state ppid pgrp ... starttime(22) ...`; comm may hold spaces and ')'. */
function stat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // f[0] is field 3 (state), so field n is f[n - 3].
    return { zombie: f[0] === "Z", pgrp: Number(f[2]), startTime: f[19] ?? "" };
  } catch {
    return undefined;
  }
}

/** The live processes of group `pgid`, from /proc. */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s && s.pgrp === pgid && !s.zombie) out.push(Number(name));
  }
  return out;
}

function carriesRunId(pid: number, runId: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(`${RUN_ID_ENV}=${runId}`);
  } catch {
    return false; // another user's process, or gone
  }
}
