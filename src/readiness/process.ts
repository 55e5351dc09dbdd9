/**
 * The local driver (DESIGN.md "Readiness sources": process): what KEDA and a Deployment do in a
 * cluster, on one machine. It starts `command` when the first request is held, is ready once
 * `url` answers 2xx, stops the command after `idleTimeout` without traffic, and restarts it with
 * backoff if it dies while requests wait, so a crash during a cold start costs a restart, not the
 * held requests.
 *
 * States: stopped -> starting -> ready -> stopping -> stopped, and backoff between a failed run
 * and its restart. Invariants:
 * - At most one run (process group) at a time; a run is always ended by SIGKILL to its group, so
 *   nothing it started outlives it (child.ts).
 * - `ready` is true only in state "ready"; every change of it is emitted once.
 * - Nothing is started without a held request: a stopped command is a known state (cold), so
 *   the source is synced from the start.
 * - Every timer is cleared by stop(), which waits for the run to end (bounded by
 *   stopGracePeriod plus a little).
 * - Each run is recorded in a run file while it lives (readiness/pidfile.ts); before its first
 *   run, start() stops a run that a killed coldfront left behind, so that no probe of ours is
 *   answered by it and no run of ours finds its port taken.
 */
import { performance } from "node:perf_hooks";
import type { FastifyBaseLogger } from "fastify";
import { Agent } from "undici";
import type { TargetConfig } from "../config/schema.js";
import { ChildGroup, type ExitInfo } from "./child.js";
import { inspect, newRunId, RUN_ID_ENV, RunFile, startTimeOf, stopGroup } from "./pidfile.js";
import { probeOnce } from "./probe.js";
import { type Demand, Listeners, type ReadinessSource } from "./source.js";

export type ProcessOptions = NonNullable<NonNullable<TargetConfig["readiness"]>["process"]>;

export type ProcessState = "stopped" | "starting" | "ready" | "stopping" | "backoff";

/** Restart backoff after a failed run: doubles from the first value up to the cap. */
const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 30_000;
/** A run that was ready this long before it died was healthy: the next failure starts over. */
const BACKOFF_RESET_AFTER = 30_000;
/** Consecutive failed probes of a ready command before it counts as not ready. */
const UNHEALTHY_AFTER = 3;
/** Once ready, the probe only watches for a hang (an exit is seen at once): a calmer pace. */
const READY_PROBE_MIN_INTERVAL = 1000;
const PROBE_TIMEOUT = 2000;
/** How long stop() waits after SIGKILL for the exit to be reported. */
const KILL_WAIT = 2000;
/** Flags whose value is not logged with the command line (`--api-key`, `--hf-token`, ...). */
const SECRET_FLAG = /(^|[-_])(key|token|secret|password|passwd|credentials?)$/i;

type StopReason = "idle" | "start_timeout";

export class ProcessSource implements ReadinessSource {
  readonly kind = "process";
  /** A stopped command is a known state, cold; there is nothing to wait for. */
  readonly synced = true;
  readonly #target: string;
  readonly #o: ProcessOptions;
  readonly #log: FastifyBaseLogger;
  readonly #listeners = new Listeners<boolean>();
  #agent: Agent | undefined;
  #state: ProcessState = "stopped";
  #ready = false;
  #open = false;
  #run: ChildGroup | undefined;
  #stopReason: StopReason | undefined;
  #startedAt = 0;
  #readyAt: number | undefined;
  #failedProbes = 0;
  #pending = 0;
  #inFlight = 0;
  #idle = true;
  #idleSince = 0;
  #restarts = 0;
  #backoff = 0;
  #lastExit: ExitInfo | null = null;
  readonly #timers = new Timers<"probe" | "start" | "kill" | "backoff" | "idle">();
  #stopping: Promise<void> | undefined;
  readonly #runFile: RunFile;
  /** The check for a run left behind (once per source); nothing is launched before it is done. */
  #leftover: Promise<void> | undefined;
  #leftoverChecked = false;
  #runFileWarned = false;

  /** `runDir` is for tests; by default readiness/pidfile.ts's runDirectory(). */
  constructor(target: string, options: ProcessOptions, log: FastifyBaseLogger, runDir?: string) {
    this.#target = target;
    this.#o = options;
    this.#log = log;
    this.#runFile = new RunFile(target, options.command, options.url, runDir);
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** Starts nothing: the command starts with the first held request. */
  async start(): Promise<void> {
    if (this.#open) return;
    this.#open = true;
    this.#stopping = undefined;
    this.#agent = new Agent({ keepAliveTimeout: 1000, connections: 2 });
    this.#leftover ??= this.#stopLeftover();
    await this.#leftover;
    if (this.#open && this.#pending > 0 && this.#state === "stopped") this.#launch();
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#shutdown();
    return this.#stopping;
  }

  onChange(listener: (ready: boolean) => void): () => void {
    return this.#listeners.add(listener);
  }

  /**
   * Called on every change of pending or in flight, so the warm path pays two calls per request:
   * no timer is set or cleared here while traffic flows, only a timestamp taken when it stops.
   */
  demand(d: Demand): void {
    this.#pending = d.pending;
    this.#inFlight = d.inFlight;
    if (d.pending > 0 || d.inFlight > 0) {
      this.#idle = false;
      if (d.pending > 0 && this.#state === "stopped" && this.#open && this.#leftoverChecked) this.#launch();
      return;
    }
    if (this.#idle) return;
    this.#idle = true;
    this.#idleSince = performance.now();
    this.#armIdle(this.#o.idleTimeout);
  }

  status(): Record<string, unknown> {
    return {
      state: this.#state,
      pid: this.#run?.pid ?? null,
      restarts: this.#restarts,
      lastExit: this.#lastExit,
      url: this.#o.url,
      runFile: this.#runFile.path,
    };
  }

  #launch(): void {
    this.#timers.clear("backoff");
    this.#state = "starting";
    this.#startedAt = performance.now();
    this.#readyAt = undefined;
    this.#failedProbes = 0;
    const runId = newRunId();
    const run = new ChildGroup({
      command: this.#o.command,
      cwd: this.#o.cwd,
      // Inherited by everything the run starts: what proves a leftover group is this run.
      env: { ...this.#o.env, [RUN_ID_ENV]: runId },
      onLine: (stream, line) => this.#forward(run, stream, line),
      onEnd: () => this.#runFile.remove(runId),
    });
    this.#run = run;
    void run.exited.then((info) => this.#onExit(run, info));
    if (run.pid === undefined) return; // the spawn error arrives through `exited`
    this.#record(run.pid, runId);
    // Env values are never logged: they may hold secrets. Only their names are.
    this.#log.info(
      {
        target: this.#target,
        childPid: run.pid,
        command: redact(this.#o.command),
        cwd: this.#o.cwd,
        env: Object.keys(this.#o.env),
      },
      "starting command",
    );
    this.#armStartTimeout();
    this.#scheduleProbe(run, this.#o.probeInterval);
  }

  /** Writes the run file of a run just started; a directory that refuses it is warned about once. */
  #record(pid: number, runId: string): void {
    const written = this.#runFile.write({
      target: this.#target,
      pgid: pid,
      startTime: startTimeOf(pid),
      runId,
      command: redact(this.#o.command),
      url: this.#o.url,
      owner: { pid: process.pid, startTime: startTimeOf(process.pid) },
      startedAt: new Date().toISOString(),
    });
    if (written || this.#runFileWarned) return;
    this.#runFileWarned = true;
    this.#log.warn(
      { target: this.#target, runFile: this.#runFile.path },
      "cannot write the run file; a run outliving a killed coldfront will not be found",
    );
  }

  /**
   * Stops the run that the run file records, when it is still alive, proven to be that run, and
   * its coldfront is gone (readiness/pidfile.ts): SIGTERM to its group, SIGKILL after
   * stopGracePeriod. Never rejects.
   */
  async #stopLeftover(): Promise<void> {
    try {
      const record = this.#runFile.read();
      if (!record) return;
      const left = inspect(record);
      const fields = {
        target: this.#target,
        pgid: record.pgid,
        ownerPid: record.owner.pid,
        command: record.command,
        runFile: this.#runFile.path,
      };
      if (left.state === "owned") {
        // Its coldfront is alive: two coldfronts run one command; the second's run will fail.
        this.#log.warn(fields, "another coldfront runs this target's command; leaving its run alone");
        return;
      }
      if (left.state === "unproven") {
        this.#log.warn(
          { ...fields, members: left.members },
          "the process group of a run left behind is alive, but nothing proves it is that run; not stopping it",
        );
      } else if (left.state === "orphan") {
        this.#log.warn(
          { ...fields, members: left.members },
          "found a run left behind by a coldfront that did not exit cleanly; stopping it",
        );
        const how = await stopGroup(record.pgid, this.#o.stopGracePeriod, KILL_WAIT);
        if (how === "stuck") this.#log.error(fields, "the run left behind survived SIGKILL");
        else
          this.#log.info(
            { ...fields, signal: how === "term" ? "SIGTERM" : "SIGKILL" },
            "stopped the run left behind",
          );
      }
      this.#runFile.remove(record.runId);
    } catch (err) {
      this.#log.warn(
        { target: this.#target, err: (err as Error).message },
        "checking for a run left behind failed",
      );
    } finally {
      this.#leftoverChecked = true;
    }
  }

  #forward(run: ChildGroup, stream: "stdout" | "stderr", line: string): void {
    let msg = line;
    // A pino (or other JSON) logger's line: keep its message, not a JSON document inside ours.
    if (line.startsWith("{")) {
      try {
        const parsed = JSON.parse(line) as { msg?: unknown };
        if (typeof parsed.msg === "string") msg = parsed.msg;
      } catch {}
    }
    // childPid, not pid: pino already writes coldfront's own pid on every line.
    this.#log.info({ target: this.#target, stream, childPid: run.pid }, msg);
  }

  #scheduleProbe(run: ChildGroup, delay: number): void {
    this.#timers.set("probe", delay, () => void this.#probe(run));
  }

  /** One probe of the current run; schedules the next. Never throws. */
  async #probe(run: ChildGroup): Promise<void> {
    if (run !== this.#run || !this.#agent) return;
    const { ok, error } = await probeOnce(this.#o.url, this.#agent, PROBE_TIMEOUT);
    // The run may have ended, or been told to stop, while the probe was out.
    if (run !== this.#run || (this.#state !== "starting" && this.#state !== "ready")) return;
    if (ok) {
      this.#failedProbes = 0;
      if (this.#state === "starting") this.#becomeReady(run);
    } else if (this.#state === "ready" && ++this.#failedProbes >= UNHEALTHY_AFTER) {
      this.#log.warn(
        {
          target: this.#target,
          childPid: run.pid,
          url: this.#o.url,
          err: error,
          failures: this.#failedProbes,
        },
        "command stopped answering its health check; not ready",
      );
      // Back to starting: it may recover, or else startTimeout ends it.
      this.#state = "starting";
      this.#readyAt = undefined;
      this.#startedAt = performance.now();
      this.#armStartTimeout();
      this.#setReady(false);
    }
    this.#scheduleProbe(
      run,
      this.#state === "ready"
        ? Math.max(this.#o.probeInterval, READY_PROBE_MIN_INTERVAL)
        : this.#o.probeInterval,
    );
  }

  #becomeReady(run: ChildGroup): void {
    this.#timers.clear("start");
    this.#state = "ready";
    this.#readyAt = performance.now();
    this.#log.info(
      { target: this.#target, childPid: run.pid, readyAfterMs: Math.round(this.#readyAt - this.#startedAt) },
      "command ready",
    );
    this.#setReady(true);
  }

  #armStartTimeout(): void {
    this.#timers.set("start", this.#o.startTimeout, () => {
      const run = this.#run;
      if (!run || this.#state !== "starting") return;
      this.#log.warn(
        { target: this.#target, childPid: run.pid, startTimeoutMs: this.#o.startTimeout },
        "command did not become ready within startTimeout; stopping it",
      );
      this.#stopRun(run, "start_timeout");
    });
  }

  #armIdle(delay: number): void {
    if (this.#timers.has("idle") || !this.#run) return;
    this.#timers.set("idle", delay, () => {
      const run = this.#run;
      if (!this.#idle || !run || (this.#state !== "starting" && this.#state !== "ready")) return;
      const idleFor = performance.now() - this.#idleSince;
      // Traffic came and went since the timer was set: wait out the rest from its last end.
      if (idleFor < this.#o.idleTimeout) {
        this.#armIdle(this.#o.idleTimeout - idleFor);
        return;
      }
      this.#log.info(
        { target: this.#target, childPid: run.pid, idleMs: Math.round(idleFor) },
        "no traffic for idleTimeout; stopping command",
      );
      this.#stopRun(run, "idle");
    });
  }

  /** SIGTERM to the group, SIGKILL after stopGracePeriod; #onExit takes it from there. */
  #stopRun(run: ChildGroup, reason: StopReason): void {
    this.#stopReason = reason;
    this.#state = "stopping";
    this.#timers.clear("probe");
    this.#timers.clear("start");
    this.#setReady(false);
    run.signal("SIGTERM");
    if (this.#timers.has("kill")) return;
    this.#timers.set("kill", this.#o.stopGracePeriod, () => {
      if (run.signal("SIGKILL"))
        this.#log.warn(
          { target: this.#target, childPid: run.pid, stopGracePeriodMs: this.#o.stopGracePeriod },
          "command ignored SIGTERM for stopGracePeriod; killed",
        );
    });
  }

  #onExit(run: ChildGroup, info: ExitInfo): void {
    if (run !== this.#run) return;
    this.#run = undefined;
    run.dispose();
    for (const t of ["probe", "start", "kill", "idle"] as const) this.#timers.clear(t);
    const reason = this.#stopReason;
    this.#stopReason = undefined;
    this.#lastExit = info;
    this.#state = "stopped";
    if (this.#open) this.#afterExit(run, info, reason);
    // Last, once the state is settled: the gate answers a change of readiness by calling
    // demand() at once, which must not start a second run beside a pending restart.
    this.#setReady(false);
  }

  /** Stopped on purpose, or failed: decides between staying stopped and starting again. */
  #afterExit(run: ChildGroup, info: ExitInfo, reason: StopReason | undefined): void {
    const fields = { target: this.#target, childPid: run.pid, code: info.code, signal: info.signal };
    if (reason === "idle") {
      this.#backoff = 0;
      this.#log.info(fields, "command stopped");
      // A request may have been held while it was stopping: start afresh at once.
      if (this.#pending > 0) this.#launch();
      return;
    }
    if (info.error)
      this.#log.error(
        { ...fields, err: info.error, command: redact(this.#o.command) },
        "command failed to start",
      );
    else if (reason === "start_timeout") this.#log.warn(fields, "command stopped after startTimeout");
    else this.#log.warn(fields, "command exited");

    const wasReadyFor = this.#readyAt === undefined ? 0 : performance.now() - this.#readyAt;
    if (wasReadyFor >= BACKOFF_RESET_AFTER) this.#backoff = 0;
    if (this.#pending === 0 && this.#inFlight === 0) return; // no demand: stay stopped
    this.#backoff = this.#backoff === 0 ? BACKOFF_FIRST : Math.min(BACKOFF_MAX, this.#backoff * 2);
    this.#state = "backoff";
    this.#log.warn(
      { target: this.#target, inMs: this.#backoff, pending: this.#pending, inFlight: this.#inFlight },
      "requests are waiting; restarting command",
    );
    this.#timers.set("backoff", this.#backoff, () => {
      if (!this.#open || this.#state !== "backoff") return;
      if (this.#pending === 0 && this.#inFlight === 0) {
        this.#state = "stopped";
        return;
      }
      this.#restarts++;
      this.#launch();
    });
  }

  async #shutdown(): Promise<void> {
    this.#open = false;
    this.#timers.clearAll();
    // A leftover being stopped is finished first (bounded by stopGracePeriod plus KILL_WAIT).
    await this.#leftover;
    const run = this.#run;
    if (run?.running) {
      this.#log.info({ target: this.#target, childPid: run.pid }, "stopping command");
      this.#state = "stopping";
      this.#setReady(false);
      run.signal("SIGTERM");
      if (!(await run.waitExit(this.#o.stopGracePeriod))) {
        this.#log.warn(
          { target: this.#target, childPid: run.pid, stopGracePeriodMs: this.#o.stopGracePeriod },
          "command ignored SIGTERM for stopGracePeriod; killing it",
        );
        run.signal("SIGKILL");
        await run.waitExit(KILL_WAIT);
      }
    }
    run?.dispose();
    this.#run = undefined;
    this.#state = "stopped";
    this.#setReady(false);
    const agent = this.#agent;
    this.#agent = undefined;
    await agent?.destroy();
  }

  #setReady(ready: boolean): void {
    if (ready === this.#ready) return;
    this.#ready = ready;
    this.#listeners.emit(ready);
  }
}

/** Named one-shot timers: setting one replaces it, and stop() clears them all at once. */
class Timers<K extends string> {
  readonly #timers = new Map<K, NodeJS.Timeout>();

  set(name: K, ms: number, fn: () => void): void {
    this.clear(name);
    this.#timers.set(
      name,
      setTimeout(() => {
        this.#timers.delete(name);
        fn();
      }, ms),
    );
  }

  has(name: K): boolean {
    return this.#timers.has(name);
  }

  clear(name: K): void {
    clearTimeout(this.#timers.get(name));
    this.#timers.delete(name);
  }

  clearAll(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }
}

/** The command line for logs, without the values of flags that look like secrets. */
export function redact(command: readonly string[]): string[] {
  const secret = (flag: string) => flag.startsWith("-") && SECRET_FLAG.test(flag.replace(/^-+/, ""));
  return command.map((word, i) => {
    const eq = word.indexOf("=");
    if (eq > 0 && secret(word.slice(0, eq))) return `${word.slice(0, eq)}=***`;
    const prev = command[i - 1];
    if (prev !== undefined && !prev.includes("=") && secret(prev) && !word.startsWith("-")) return "***";
    return word;
  });
}
