/**
 * Child processes of the harness: every system, backend and load generator runs in its own
 * process (its CPU and RSS are its own) and its own process group (stopping it stops whatever it
 * started, nginx's workers included). Every child is registered, so that a failure anywhere, an
 * uncaught error or Ctrl-C still stops them all.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

const live = new Set<Child>();

/** Sends SIGKILL to every live child's group; for process exit, where nothing async can run. */
function killAllNow(): void {
  for (const c of live) {
    try {
      process.kill(-c.pid, "SIGKILL");
    } catch {}
  }
}
process.once("exit", killAllNow);

/**
 * Which side of the machine a child runs on with `--pin`: the system under test on one core,
 * everything that drives it (load generators, the backend, sinks) on the other(s).
 */
export type Role = "sut" | "load";

/** CPU lists for taskset, per role; undefined when pinning is off. */
export interface Pinning {
  readonly sut: string;
  readonly load: string;
}

let pinning: Pinning | undefined;

/** Turns pinning on (every later spawn with a role runs under `taskset -c <list>`) or off. */
export function configurePinning(p: Pinning | undefined): void {
  pinning = p;
}

export function currentPinning(): Pinning | undefined {
  return pinning;
}

export interface SpawnOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Both output streams are copied here, for a post-mortem when something fails. */
  readonly logFile?: string;
  /** With pinning on, the CPUs this child may run on (see configurePinning). */
  readonly role?: Role;
}

const STDERR_TAIL = 4096;

export class Child {
  readonly name: string;
  readonly pid: number;
  /** Settles with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  readonly #log: WriteStream | undefined;
  #stdout = "";
  #stderrTail = "";
  #exitCode: number | null | undefined;
  readonly #lineWaiters = new Set<(line: string) => void>();
  #partial = "";

  private constructor(name: string, proc: ChildProcess, log: WriteStream | undefined) {
    this.name = name;
    this.#log = log;
    if (proc.pid === undefined) throw new Error(`${name}: spawn failed`);
    this.pid = proc.pid;
    proc.stdout?.setEncoding("utf8");
    proc.stderr?.setEncoding("utf8");
    proc.stdout?.on("data", (text: string) => {
      this.#stdout += text;
      this.#log?.write(text);
      const lines = (this.#partial + text).split("\n");
      this.#partial = lines.pop() ?? "";
      for (const line of lines) for (const w of this.#lineWaiters) w(line);
    });
    proc.stderr?.on("data", (text: string) => {
      this.#stderrTail = (this.#stderrTail + text).slice(-STDERR_TAIL);
      this.#log?.write(text);
    });
    this.exited = new Promise((resolve) => {
      proc.once("exit", (code) => {
        this.#exitCode = code;
        live.delete(this);
        resolve(code);
      });
      proc.once("error", () => {
        this.#exitCode = null;
        live.delete(this);
        resolve(null);
      });
    });
    live.add(this);
  }

  /**
   * Starts `command` in a new process group, with its open-files limit raised to the hard limit
   * (10,000 held connections need that headroom; a shell `ulimit` is the portable way to raise it
   * for one child, since Node has no setrlimit). With pinning on and a role given, the command
   * runs under `taskset -c <cpus>`, which execs it: the pid is the command's own.
   */
  static spawn(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Child {
    const cpus = options.role && pinning ? pinning[options.role] : undefined;
    const argv = cpus ? ["taskset", "-c", cpus, command, ...args] : [command, ...args];
    const proc = spawn("/bin/sh", ["-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', ...argv], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const log = options.logFile ? createWriteStream(options.logFile, { flags: "a" }) : undefined;
    // A log that cannot be written is no reason to fail a run.
    log?.on("error", () => {});
    return new Child(name, proc, log);
  }

  get running(): boolean {
    return this.#exitCode === undefined;
  }

  get stdout(): string {
    return this.#stdout;
  }

  /** The name, the exit code if it exited, and the end of its stderr: for error messages. */
  describe(): string {
    const exit = this.running ? "running" : `exited with ${this.#exitCode}`;
    const tail = this.#stderrTail.trim();
    return `${this.name} (pid ${this.pid}, ${exit})${tail ? `:\n${tail}` : ""}`;
  }

  /** The first stdout line that is a JSON object satisfying `pred`, including lines already seen. */
  waitMessage<T>(pred: (m: Record<string, unknown>) => boolean, ms: number): Promise<T> {
    const parse = (line: string): Record<string, unknown> | undefined => {
      if (!line.startsWith("{")) return undefined;
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        return undefined;
      }
    };
    for (const line of this.#stdout.split("\n")) {
      const m = parse(line);
      if (m && pred(m)) return Promise.resolve(m as T);
    }
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#lineWaiters.delete(onLine);
      };
      const onLine = (line: string) => {
        const m = parse(line);
        if (m && pred(m)) {
          done();
          resolve(m as T);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no expected message within ${ms} ms from ${this.describe()}`));
      }, ms);
      this.#lineWaiters.add(onLine);
      void this.exited.then(() => {
        if (!this.#lineWaiters.has(onLine)) return;
        // Let the last buffered line through first.
        setImmediate(() => {
          if (!this.#lineWaiters.has(onLine)) return;
          done();
          reject(new Error(`exited before the expected message: ${this.describe()}`));
        });
      });
    });
  }

  /** Waits for the exit, bounded; a child still running after `ms` is stopped and that is an error. */
  async wait(ms: number): Promise<number | null> {
    const code = await Promise.race([this.exited, sleep(ms).then(() => "timeout" as const)]);
    if (code === "timeout") {
      await this.stop(0);
      throw new Error(`${this.name} did not finish within ${ms} ms`);
    }
    return code;
  }

  /**
   * SIGTERM to the group, SIGKILL after `graceMs`. The group is killed even after the leader
   * exited, so nothing it started is left behind.
   */
  async stop(graceMs = 3000): Promise<void> {
    if (this.running) {
      try {
        process.kill(-this.pid, "SIGTERM");
      } catch {}
      await Promise.race([this.exited, sleep(graceMs)]);
    }
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {}
    await Promise.race([this.exited, sleep(2000)]);
    live.delete(this);
    await new Promise<void>((resolve) => (this.#log ? this.#log.end(resolve) : resolve()));
  }
}

/** Stops every child still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(1000)));
}

/** A port free right now on 127.0.0.1 (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.setTimeout(500);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Resolves once `port` accepts connections; fails fast if `child` exits first. */
export async function waitForPort(port: number, child: Child, ms = 15_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (!child.running) throw new Error(`exited before listening on ${port}: ${child.describe()}`);
    if (await canConnect(port)) return;
    await sleep(25);
  }
  throw new Error(`not listening on ${port} within ${ms} ms: ${child.describe()}`);
}

/** Polls `check` every `interval` ms until it returns a value other than undefined, bounded. */
export async function poll<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms: number,
  interval = 50,
): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (performance.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(interval);
  }
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
