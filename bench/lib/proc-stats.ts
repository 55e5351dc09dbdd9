/**
 * CPU time and resident memory of a process tree, read from /proc (Linux), so each system is
 * measured from outside, the same way for Node and for nginx (master plus workers).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (almost always 100). */
const CLK_TCK = (() => {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the command name, which may itself hold spaces and parens. */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** `pid` and every process below it (nginx's workers below its master). */
export function processTree(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    // Field 4 of stat is the parent pid; index 1 once the pid and name are cut off.
    const ppid = Number(statFields(Number(entry))?.[1]);
    if (!Number.isFinite(ppid)) continue;
    const list = parents.get(ppid) ?? [];
    list.push(Number(entry));
    parents.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0 && out.length < 1000) {
    const p = stack.pop() as number;
    out.push(p);
    stack.push(...(parents.get(p) ?? []));
  }
  return out;
}

/** User plus system CPU seconds used so far by these processes, at clock-tick resolution (10 ms). */
export function cpuTicksSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    // utime and stime are fields 14 and 15 of stat: indexes 11 and 12 here.
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / CLK_TCK;
}

/**
 * Nanoseconds on CPU of every live thread of `pid`, from /proc/<pid>/task/<tid>/schedstat (its
 * first field); undefined when the kernel has no schedstat. A thread that exits takes its
 * time with it, which a Node process (V8's and libuv's threads live as long as it does), nginx
 * and HAProxy (one thread each here) never do during a measured run.
 */
function schedNs(pid: number): number {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {}
  }
  return ns;
}

const HAS_SCHEDSTAT = (() => {
  try {
    readFileSync("/proc/self/schedstat", "utf8");
    return true;
  } catch {
    return false;
  }
})();

/**
 * CPU seconds used so far by these processes: from schedstat (nanosecond resolution, so a run of
 * a second or two is measured to well under 1%) when the kernel has it, else from stat's ticks.
 * Only differences between two readings mean anything.
 */
export function cpuSeconds(pids: readonly number[]): number {
  if (!HAS_SCHEDSTAT) return cpuTicksSeconds(pids);
  let ns = 0;
  for (const pid of pids) ns += schedNs(pid);
  return ns / 1e9;
}

/** Where cpuSeconds reads from, for the results header. */
export const CPU_SOURCE = HAS_SCHEDSTAT
  ? "/proc/<pid>/task/*/schedstat (ns resolution), summed over the process tree"
  : "/proc/<pid>/stat utime+stime (10 ms ticks), summed over the process tree";

function statusKb(pid: number, key: string): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Resident set size now, bytes, summed over the processes. */
export function rssBytes(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + statusKb(pid, "VmRSS") * 1024, 0);
}

/** RSS of a process tree, sampled every `interval` ms until stopped: its peak and every sample. */
export function startRssSampler(pids: () => readonly number[], interval = 250) {
  const samples: { at: number; rss: number }[] = [];
  const t0 = performance.now();
  const take = () => {
    const p = pids();
    if (p.length > 0) samples.push({ at: performance.now() - t0, rss: rssBytes(p) });
  };
  take();
  const timer = setInterval(take, interval);
  return {
    /** Stops sampling (one last sample first) and returns the samples, ms since start. */
    stop(): { peak: number; samples: { at: number; rss: number }[] } {
      clearInterval(timer);
      take();
      return { peak: samples.length > 0 ? Math.max(...samples.map((s) => s.rss)) : Number.NaN, samples };
    },
  };
}

/** The open-files limit (soft, hard) that children get after the harness raises it to the hard limit. */
export function openFilesLimit(): { soft: number; hard: number } {
  try {
    const text = readFileSync("/proc/self/limits", "utf8");
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
    const num = (s: string | undefined) => (s === "unlimited" || s === undefined ? Infinity : Number(s));
    return { soft: num(m?.[1]), hard: num(m?.[2]) };
  } catch {
    return { soft: 1024, hard: 1024 };
  }
}
