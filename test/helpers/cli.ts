/** Runs the built executable (dist/cli.js) as users do; `npm test` builds it first. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

/** Builds dist/ when a test run starts without it (vitest run directly, not via npm test). */
export function ensureBuilt(): void {
  if (existsSync(CLI)) return;
  execFileSync(
    process.execPath,
    [
      fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url)),
      "-p",
      "tsconfig.build.json",
    ],
    {
      cwd: ROOT,
      stdio: "inherit",
    },
  );
}

export interface Running {
  readonly child: ChildProcess;
  /** Every stdout line so far (pino JSON lines). */
  readonly lines: string[];
  stderr(): string;
  /** Resolves with the first parsed log line for which `pick` returns a value. */
  waitForLog<T>(pick: (line: Record<string, unknown>) => T | undefined, ms?: number): Promise<T>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL if still running; always safe to call in afterEach. */
  kill(): Promise<void>;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let err = "";
  let buf = "";
  const waiters = new Set<() => void>();
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
    }
    for (const w of waiters) w();
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      for (const w of waiters) w();
      resolve({ code, signal });
    }),
  );
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    waitForLog<T>(pick: (line: Record<string, unknown>) => T | undefined, ms = 10_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const check = () => {
          for (const l of lines) {
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(l);
            } catch {
              continue;
            }
            const v = pick(parsed);
            if (v !== undefined) {
              done();
              resolve(v);
              return;
            }
          }
          if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`process exited before the log line appeared; stderr: ${err}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(`no matching log line within ${ms} ms; stdout: ${lines.join("\n")}\nstderr: ${err}`),
          );
        }, ms);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

const HAS_PROC = existsSync("/proc/self/stat");

/**
 * Alive and not a zombie: a zombie is dead, only not yet reaped by whoever adopted it (once
 * coldfront itself is gone, that is PID 1, which in some containers never reaps).
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
  if (!HAS_PROC) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false; // gone between the two looks
  }
}
