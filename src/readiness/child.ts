/**
 * One run of a `process` readiness source's command, as a process group, so that it never leaves
 * an orphan process when coldfront exits (README "Try the scale-from-zero loop on one machine":
 * however coldfront is stopped, it stops the simulator it started). The command leads a group of its own, so that a
 * signal reaches the wrappers it may start (`npm exec`, `sh -c`, a Python launcher) along with
 * their children, and so that a Ctrl-C in coldfront's terminal reaches coldfront alone, which
 * then stops the group in order.
 *
 * A bare `node` as the command's first word runs coldfront's own Node (`process.execPath`), not
 * the first `node` on PATH: coldfront may run on a Node that PATH does not lead to (the pinned
 * one of npm scripts, an absolute path), and the one PATH leads to may be too old (DESIGN.md
 * "Runtime": the system Node may be older than 24). Only that exact word is replaced: `nodejs`,
 * `/usr/bin/node`, `npx` or `sh -c "node ..."` run as written.
 */
import { spawn } from "node:child_process";
import type { Readable } from "node:stream";

export interface ExitInfo {
  /** Exit code, or null when a signal ended it or it never started. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Why it could not be started (ENOENT, EACCES, a missing cwd): it never ran. */
  readonly error?: string;
}

export interface ChildOptions {
  readonly command: readonly string[];
  readonly cwd: string | undefined;
  /** Laid over coldfront's own environment. */
  readonly env: Readonly<Record<string, string>>;
  /** Each line the command writes, at most `maxLine` characters. */
  readonly onLine: (stream: "stdout" | "stderr", line: string) => void;
  readonly maxLine?: number;
  /**
   * Called once, synchronously, when the run is over: its leader exited (and the group was
   * killed), or coldfront is exiting and the exit hook killed the group.
   */
  readonly onEnd?: () => void;
}

/** The file to execute for a command's first word: see the top of this file. */
export function commandFile(first: string): string {
  return first === "node" ? process.execPath : first;
}

const DEFAULT_MAX_LINE = 4096;

export class ChildGroup {
  /** Undefined when the command could not be spawned. */
  readonly pid: number | undefined;
  /** Resolves once, when the group leader has exited (or failed to start). Never rejects. */
  readonly exited: Promise<ExitInfo>;
  #exit: ExitInfo | undefined;
  /** Last resort: coldfront exits without stop() (an uncaught error, process.exit()). */
  readonly #onProcessExit = (): void => {
    this.#killGroup("SIGKILL");
    this.#ended();
  };
  #onEnd: (() => void) | undefined;

  constructor(o: ChildOptions) {
    let settle!: (info: ExitInfo) => void;
    this.exited = new Promise<ExitInfo>((resolve) => {
      settle = resolve;
    });
    const finish = (info: ExitInfo): void => {
      if (this.#exit) return;
      this.#exit = info;
      // The leader is gone; whatever it started and left behind goes with it, now, while the
      // group id is still certainly this run's.
      this.#killGroup("SIGKILL");
      process.removeListener("exit", this.#onProcessExit);
      this.#ended();
      settle(info);
    };
    this.#onEnd = o.onEnd;
    const [first, ...args] = o.command as [string, ...string[]];
    const file = commandFile(first);
    let pid: number | undefined;
    try {
      // No shell: the words are passed as they are. The PATH lookup (for any first word but
      // `node`) uses the merged env.
      const child = spawn(file, args, {
        cwd: o.cwd,
        env: { ...process.env, ...o.env },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      pid = child.pid;
      const max = o.maxLine ?? DEFAULT_MAX_LINE;
      if (child.stdout) forwardLines(child.stdout, max, (line) => o.onLine("stdout", line));
      if (child.stderr) forwardLines(child.stderr, max, (line) => o.onLine("stderr", line));
      child.once("error", (err) => {
        // Spawn failures come here (and the child never ran); later errors (a failed kill) do
        // not end the run.
        if (child.pid === undefined) finish({ code: null, signal: null, error: err.message });
      });
      child.once("exit", (code, signal) => finish({ code, signal }));
    } catch (err) {
      queueMicrotask(() => finish({ code: null, signal: null, error: (err as Error).message }));
    }
    this.pid = pid;
    if (pid !== undefined) process.on("exit", this.#onProcessExit);
  }

  #ended(): void {
    const onEnd = this.#onEnd;
    this.#onEnd = undefined;
    onEnd?.();
  }

  /** The leader has not exited yet. */
  get running(): boolean {
    return this.pid !== undefined && this.#exit === undefined;
  }

  /**
   * Signals the whole group while its leader runs; false when there is nothing to signal. Once
   * the leader has exited the group was already killed, and its id may soon belong to a stranger.
   */
  signal(sig: NodeJS.Signals): boolean {
    if (this.#exit) return false;
    return this.#killGroup(sig);
  }

  #killGroup(sig: NodeJS.Signals): boolean {
    if (this.pid === undefined) return false;
    try {
      process.kill(-this.pid, sig);
      return true;
    } catch {
      return false; // ESRCH: the group is already empty
    }
  }

  /** Resolves true if the leader exits within `ms`; the timer is cleared either way. */
  async waitExit(ms: number): Promise<boolean> {
    if (!this.running) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.exited.then(() => true as const), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drops the process-exit hook (the run is over, or stop() already waited for it). */
  dispose(): void {
    process.removeListener("exit", this.#onProcessExit);
  }
}

/**
 * Splits a stream into lines of at most `max` characters; a longer line is cut and its rest
 * dropped, so a command that prints a huge line (or no newline at all) cannot grow memory.
 */
export function forwardLines(stream: Readable, max: number, onLine: (line: string) => void): void {
  let buf = "";
  let dropping = false;
  const emit = (line: string): void => {
    const text = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (text.length > 0) onLine(text.length > max ? `${text.slice(0, max)}…` : text);
  };
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    let start = 0;
    let nl = chunk.indexOf("\n");
    while (nl >= 0) {
      if (!dropping) emit(buf + chunk.slice(start, nl));
      buf = "";
      dropping = false;
      start = nl + 1;
      nl = chunk.indexOf("\n", start);
    }
    if (dropping) return;
    buf += chunk.slice(start);
    if (buf.length > max) {
      emit(buf);
      buf = "";
      dropping = true;
    }
  });
  stream.on("end", () => {
    if (!dropping) emit(buf);
    buf = "";
  });
  // A broken pipe from a dying child is not coldfront's problem.
  stream.on("error", () => {});
}
