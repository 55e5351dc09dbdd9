/**
 * When `coldfront proxy` is asked to stop (DESIGN.md "Shutdown"): SIGTERM, SIGINT, SIGHUP and,
 * for the process that `npm start` runs, that process's parent going away.
 *
 * Why the parent: npm runs a script as `sh -c "<script>"`, and `kill <npm's PID>` makes npm
 * forward SIGTERM to that shell, which dies of it without passing it on; coldfront, re-parented,
 * would keep its ports and its `process` target's command. So the `start` script `exec`s, which
 * makes coldfront npm's own child, the one npm forwards to. npm forwards only SIGINT and SIGTERM,
 * though: SIGHUP (or SIGKILL) ends npm alone. So the script also sets {@link EXIT_WITH_PARENT},
 * and coldfront then checks its parent PID every second and stops, as on SIGTERM, once it has
 * changed: the parent is gone. The check is opt-in, since a coldfront started with `nohup`, or by
 * a shell that then exits, is re-parented on purpose.
 *
 * Under `npm start` a Ctrl-C arrives twice: the terminal signals its whole foreground group (npm
 * and coldfront), and npm forwards its own copy a moment later. With the variable set, the same
 * signal again within {@link ECHO_MS} is taken as that copy, not as the second request that
 * makes coldfront exit at once.
 */

/**
 * `1` (as the `start` script sets it): stop once the parent process is gone, and take a quick
 * repeat of a signal for the parent's forwarded copy.
 */
export const EXIT_WITH_PARENT = "COLDFRONT_EXIT_WITH_PARENT";

/** How often the parent PID is compared with the one coldfront started under. */
const PARENT_POLL_MS = 1000;

/** A repeat of the same signal this soon under npm is npm's forwarded copy (see above). */
const ECHO_MS = 1000;

/** Read as the module loads, early in the process, so that a parent gone during startup counts. */
const STARTED_UNDER = process.ppid;

/**
 * SIGHUP too: a closed terminal sends it, and without a handler Node exits at once and a
 * `process` target's command would outlive coldfront.
 */
const SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;

export type StopReason = (typeof SIGNALS)[number] | "parent exited";

export interface StopHandlers {
  /** The first request: begin the graceful shutdown. Called at most once. */
  readonly stop: (reason: StopReason) => void;
  /** A later, distinct signal while stopping: exit now. */
  readonly force: (reason: StopReason) => void;
}

/**
 * Calls `stop` on the first request to stop and `force` on each signal after it. A parent that
 * goes away while coldfront is already stopping (a closed terminal sends SIGHUP to both) is a
 * consequence of the same request, not a second one.
 *
 * @example
 * onStopRequests({ stop: () => void app.shutdown(), force: () => process.exit(1) });
 */
export function onStopRequests(handlers: StopHandlers, env: NodeJS.ProcessEnv = process.env): void {
  // `npx coldfront ...` (npm_command=exec) has the same `sh -c` in between as `npm start`, so the
  // same parent check; the variable only adds the Ctrl-C echo rule, which npx does not need.
  const withParent = env[EXIT_WITH_PARENT] === "1";
  const watchParent = withParent || env.npm_command === "exec";
  // It describes this process's parent, not the parent of the commands a `process` target starts.
  delete env[EXIT_WITH_PARENT];
  let stopping = false;
  const lastSeen = new Map<StopReason, number>();
  const request = (reason: StopReason): void => {
    const now = performance.now();
    const previous = lastSeen.get(reason);
    lastSeen.set(reason, now);
    if (!stopping) {
      stopping = true;
      handlers.stop(reason);
      return;
    }
    if (reason === "parent exited") return;
    if (withParent && previous !== undefined && now - previous < ECHO_MS) return;
    handlers.force(reason);
  };
  for (const signal of SIGNALS) process.on(signal, () => request(signal));
  if (!watchParent) return;
  const poll = setInterval(() => {
    if (process.ppid === STARTED_UNDER) return;
    clearInterval(poll);
    request("parent exited");
  }, PARENT_POLL_MS);
  // Never what keeps the process alive: it only ends it.
  poll.unref();
}
