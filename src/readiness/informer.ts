/**
 * An informer (list, then watch from the list's resourceVersion) that does not go quiet (DESIGN.md
 * "Readiness sources": it must survive both forms of 410 Gone, a watch that ends, a connection cut
 * mid-stream, and a watch that stays open but silent). It runs @kubernetes/client-node's ListWatch and covers what
 * that ListWatch (v2.0) does not:
 *
 * - It stops for good on any error other than 410 Gone and its own inactivity timeout: a failed
 *   list, a watch answered 4xx/5xx, a connection cut mid-stream (and a credential plugin that
 *   throws before a watch becomes an unhandled rejection). Here every such error restarts a
 *   fresh ListWatch after a capped exponential backoff (reset once a run stayed healthy for a
 *   while), but never after our own stop().
 * - It never asks for bookmarks, so a quiet but healthy watch looks like a dead one. Here every
 *   watch asks for them (`allowWatchBookmarks`) and for a server-side `timeoutSeconds`, as
 *   client-go's reflector does.
 * - A list that hangs hangs it forever, and its inactivity timeout (30 s) only covers the watch.
 *   Here a watchdog restarts the whole list+watch when nothing (no event, no BOOKMARK, no list
 *   answer) arrived for `watchdog` ms. The library's own timeout is pushed past ours, so a quiet
 *   watch is not reconnected every 30 s between two of the API server's bookmarks.
 * - stop() during a list leaves a watch running (it checks `stopped` only before the list), and
 *   its reconnect delay is a plain timer. Here each run is a generation: a retired run's list is
 *   aborted, its delays are cleared, a watch it opens late is aborted at once, and whatever it
 *   still reports is ignored.
 *
 * A refusal (401 or 403: credentials or RBAC; 404: the API server does not serve the type, e.g. a
 * CRD that is not installed) is no outage: only an operator fixes it, so it is retried at a slower
 * pace (`rejectedBackoff` up to `backoffMax`), warned about once per status code rather than per
 * retry, and exposed (`rejection`) so the owner can count it as an answer (DESIGN.md "Admin
 * surface": one target's missing RBAC must not keep the replica unready). A 404 also means no
 * object of the type exists: the owner's view is replaced with an empty list.
 *
 * 410 Gone is left to the library (both forms re-list: an HTTP 410 on the watch request, and an
 * ERROR event with code 410 inside the stream, which the API server follows by ending it). Every
 * list, the first and each re-list, replaces the caller's view wholesale, so an object deleted
 * while no watch was open cannot linger.
 */
import {
  type ConfigurationOptions,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Observable,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
  Watch,
} from "@kubernetes/client-node";
import type { FastifyBaseLogger } from "fastify";

export interface InformerTuning {
  /** Restart list+watch when nothing arrived from the API server for this long (ms). */
  readonly watchdog: number;
  /** First restart delay after an error (ms); doubles per error up to backoffMax. */
  readonly backoffInitial: number;
  readonly backoffMax: number;
  /**
   * First restart delay after a refusal (401, 403, 404), ms; doubles per error up to backoffMax.
   * Slower than for an outage: the API server answered, and only an operator changes its answer.
   */
  readonly rejectedBackoff: number;
  /** A run synced this long before it failed starts the backoff over (ms). */
  readonly healthyAfter: number;
  /** Server-side watch timeout; each watch asks for a random value between this and twice it. */
  readonly watchTimeoutSeconds: number;
}

/**
 * The API server's watch cache sends a BOOKMARK to a watch that allows them about once a minute,
 * and (older versions only then) 2 s before its timeoutSeconds, after which it ends the watch and
 * the library resumes it. With watches that end every one to two minutes, a healthy watch of a
 * quiet Service is never silent for three, on any version: three minutes of silence is a dead
 * connection. Resuming a watch is cheap (served from the watch cache), and coldfront has a few
 * watches, not client-go's thousands, so it can afford shorter watches than the reflector's
 * 5 to 10 minutes.
 */
export const defaultTuning: InformerTuning = {
  watchdog: 180_000,
  backoffInitial: 250,
  backoffMax: 30_000,
  rejectedBackoff: 5_000,
  healthyAfter: 60_000,
  watchTimeoutSeconds: 60,
};

export type WatchHealth = "starting" | "synced" | "restarting";

/** What the informer tells its owner; every call describes the current run only. */
export interface InformerHandlers<T> {
  /** A complete, fresh list: everything known before is replaced. */
  replace(items: readonly T[]): void;
  /** An object was added or changed. */
  upsert(obj: T): void;
  /** An object was deleted. */
  remove(obj: T): void;
}

export interface ResilientInformerOptions<T extends KubernetesObject> {
  /** What is watched, for logs: "EndpointSlices of serving/raw-vllm". */
  readonly describe: string;
  readonly kubeConfig: KubeConfig;
  /** The watch path, e.g. /apis/discovery.k8s.io/v1/namespaces/serving/endpointslices. */
  readonly path: string;
  /** The list call, with the same selectors as the watch; `signal` aborts it. */
  readonly list: (signal: AbortSignal) => Promise<KubernetesListObject<T>>;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  readonly tuning: InformerTuning;
  readonly handlers: InformerHandlers<T>;
  readonly log: FastifyBaseLogger;
  /** Extra fields for every log line (target, namespace, ...). */
  readonly logContext: Record<string, unknown>;
  /** What a refusal means to the owner, for its warning: "the target counts as not paused". */
  readonly whileRefused?: string;
}

/** The API server's refusal of a list or watch: see the top of this file. */
export interface Rejection {
  /** 401, 403 or 404. */
  readonly code: number;
  /** describeError() of it, for /status. */
  readonly error: string;
}

type WatchCallback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;
type DoneCallback = (err: unknown) => void;

/** One list+watch attempt. Once dead, nothing it does reaches the owner. */
interface Run {
  readonly informer: ListWatch<KubernetesObject>;
  /** Aborts the list in flight. */
  readonly lists: AbortController;
  /** Watch requests handed to the library, aborted when the run dies. */
  readonly watches: Set<AbortController>;
  /** The library's reconnect delays, cleared when the run dies. */
  readonly delays: Map<NodeJS.Timeout, () => void>;
  dead: boolean;
  /** performance.now() of the last sign of life: a list answered, a watch opened, an event. */
  lastActivity: number;
  /** performance.now() when its list first completed. */
  syncedAt: number | undefined;
  watchdog: NodeJS.Timeout | undefined;
}

export class ResilientInformer<T extends KubernetesObject> {
  readonly #o: ResilientInformerOptions<T>;
  #run: Run | undefined;
  #stopped = true;
  #synced = false;
  #health: WatchHealth = "starting";
  #restarts = 0;
  #backoff = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;
  #lastEventAt: number | undefined;
  #rejection: Rejection | undefined;

  constructor(options: ResilientInformerOptions<T>) {
    this.#o = options;
  }

  /** True once a first list has completed; stays true across restarts. */
  get synced(): boolean {
    return this.#synced;
  }

  /**
   * The API server's latest refusal (401, 403, 404), kept through other errors until a list
   * succeeds again; undefined while none stands.
   */
  get rejection(): Rejection | undefined {
    return this.#rejection;
  }

  status(): {
    watch: WatchHealth;
    restarts: number;
    lastError: string | null;
    rejected: number | null;
    lastEventAgoMs: number | null;
  } {
    return {
      watch: this.#health,
      restarts: this.#restarts,
      lastError: this.#lastError ?? null,
      rejected: this.#rejection?.code ?? null,
      lastEventAgoMs:
        this.#lastEventAt === undefined ? null : Math.round(performance.now() - this.#lastEventAt),
    };
  }

  /**
   * Starts watching; resolves once the first list+watch attempt has either connected or failed
   * (a failure is retried in the background). Never rejects.
   */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    await this.#begin();
  }

  /** Stops for good: aborts the list or watch in flight and clears every timer. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    if (this.#run) this.#retire(this.#run);
    this.#run = undefined;
  }

  #begin(): Promise<void> {
    const o = this.#o;
    const watch = new BookmarkingWatch(o.kubeConfig, o.tuning, () => run);
    const informer = new ListWatch<KubernetesObject>(
      o.path,
      watch,
      () => this.#list(run),
      false,
      o.labelSelector,
      o.fieldSelector,
      { delayFn: (ms) => this.#delay(run, ms) },
    );
    const run: Run = {
      informer,
      lists: new AbortController(),
      watches: new Set(),
      delays: new Map(),
      dead: false,
      lastActivity: performance.now(),
      syncedAt: undefined,
      watchdog: undefined,
    };
    watch.onEvent = (phase, obj) => this.#onWatchEvent(run, phase, obj);
    watch.onOpen = () => this.#alive(run);
    this.#run = run;
    const live = (fn: (obj: T) => void) => (obj: KubernetesObject) => {
      if (!run.dead) fn(obj as T);
    };
    const upsert = live((obj) => o.handlers.upsert(obj));
    informer.on("add", upsert);
    informer.on("update", upsert);
    informer.on(
      "delete",
      live((obj) => o.handlers.remove(obj)),
    );
    informer.on("error", (err: unknown) => this.#failed(run, err));
    this.#armWatchdog(run);
    return informer.start().catch((err: unknown) => this.#failed(run, err));
  }

  async #list(run: Run): Promise<KubernetesListObject<KubernetesObject>> {
    const list = await this.#o.list(run.lists.signal);
    if (run.dead) throw new Error("informer run retired");
    const now = performance.now();
    this.#alive(run);
    this.#lastEventAt = now;
    run.syncedAt ??= now;
    if (this.#health !== "synced")
      this.#o.log.info(
        { ...this.#o.logContext, items: list.items.length, resourceVersion: list.metadata?.resourceVersion },
        `listed ${this.#o.describe}`,
      );
    this.#health = "synced";
    this.#synced = true;
    if (this.#rejection)
      this.#o.log.info(
        { ...this.#o.logContext, was: this.#rejection.error },
        `${this.#o.describe}: the API server answers again`,
      );
    this.#rejection = undefined;
    this.#o.handlers.replace(list.items);
    return list as KubernetesListObject<KubernetesObject>;
  }

  #onWatchEvent(run: Run, phase: string, obj: unknown): void {
    if (run.dead) return;
    this.#alive(run);
    this.#lastEventAt = performance.now();
    if (phase !== "ERROR") return;
    const s = obj as { code?: number; message?: string } | undefined;
    if (s?.code === 410) {
      // The library re-lists once the API server ends the stream.
      this.#o.log.info(
        { ...this.#o.logContext, err: s.message },
        `watch of ${this.#o.describe} expired; re-listing`,
      );
    } else {
      this.#lastError = `watch error event: ${s?.code ?? "?"} ${s?.message ?? ""}`.trim();
      this.#o.log.warn(
        { ...this.#o.logContext, err: this.#lastError },
        `watch of ${this.#o.describe} failed`,
      );
    }
  }

  #alive(run: Run): void {
    run.lastActivity = performance.now();
  }

  /** The library's reconnect delay, cancellable: a retired run's delay must not hold a timer. */
  #delay(run: Run, ms: number): Promise<void> {
    if (run.dead) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        run.delays.delete(t);
        // Waiting on our own delay is no silence of the API server's.
        this.#alive(run);
        resolve();
      }, ms);
      run.delays.set(t, resolve);
    });
  }

  #armWatchdog(run: Run): void {
    const limit = this.#o.tuning.watchdog;
    const check = () => {
      run.watchdog = undefined;
      if (run.dead) return;
      if (run.delays.size > 0) this.#alive(run);
      const idle = performance.now() - run.lastActivity;
      if (idle < limit) {
        run.watchdog = setTimeout(check, limit - idle);
        return;
      }
      this.#lastError = `nothing from the API server for ${Math.round(idle)} ms`;
      this.#o.log.warn(
        { ...this.#o.logContext, idleMs: Math.round(idle) },
        `watch of ${this.#o.describe} went silent; restarting list and watch`,
      );
      // The silence itself throttled this restart: no backoff on top.
      this.#restart(run, 0);
    };
    run.watchdog = setTimeout(check, limit);
  }

  #failed(run: Run, err: unknown): void {
    if (run.dead || this.#stopped) return;
    const t = this.#o.tuning;
    const code = refusal(err);
    const healthy = run.syncedAt !== undefined && performance.now() - run.syncedAt >= t.healthyAfter;
    const first =
      code === undefined
        ? t.backoffInitial
        : Math.min(t.backoffMax, Math.max(t.backoffInitial, t.rejectedBackoff));
    this.#backoff =
      healthy || this.#backoff === 0 ? first : Math.min(t.backoffMax, Math.max(first, this.#backoff * 2));
    // Jitter, so that many replicas that lost the API server together do not return together.
    const delay = Math.round(this.#backoff * (0.8 + Math.random() * 0.4));
    this.#lastError = describeError(err);
    const fields = { ...this.#o.logContext, err: this.#lastError, retryInMs: delay };
    if (code === undefined) {
      this.#o.log.warn(fields, `list/watch of ${this.#o.describe} failed; restarting`);
    } else {
      // Once per status code, not per retry: the same refusal every 30 s is noise.
      const again = this.#rejection?.code === code;
      this.#rejection = { code, error: this.#lastError };
      const consequence = this.#o.whileRefused ? `; ${this.#o.whileRefused}` : "";
      const msg = `list/watch of ${this.#o.describe} refused: ${REFUSAL_HINT[code]}${consequence}; retrying in the background`;
      if (again) this.#o.log.debug(fields, msg);
      else this.#o.log.warn(fields, msg);
      // A type the API server does not serve has no objects, whatever was seen of it before.
      if (code === 404) this.#o.handlers.replace([]);
    }
    this.#restart(run, delay);
  }

  #restart(run: Run, delay: number): void {
    this.#retire(run);
    if (this.#run !== run || this.#stopped) return;
    this.#run = undefined;
    this.#restarts++;
    this.#health = "restarting";
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (!this.#stopped) void this.#begin();
    }, delay);
  }

  #retire(run: Run): void {
    if (run.dead) return;
    run.dead = true;
    if (run.watchdog) clearTimeout(run.watchdog);
    run.watchdog = undefined;
    for (const [t, resolve] of run.delays) {
      clearTimeout(t);
      resolve();
    }
    run.delays.clear();
    run.lists.abort(new Error("informer run retired"));
    for (const c of run.watches) c.abort();
    run.watches.clear();
    void run.informer.stop();
  }
}

/**
 * The library's Watch, asking for bookmarks and a server-side timeout, reporting each event and
 * each opened stream, and refusing to leave a watch open for a retired run.
 */
class BookmarkingWatch extends Watch {
  onEvent: (phase: string, obj: unknown) => void = () => {};
  onOpen: () => void = () => {};
  readonly #tuning: InformerTuning;
  readonly #run: () => Run;

  constructor(kubeConfig: KubeConfig, tuning: InformerTuning, run: () => Run) {
    super(kubeConfig);
    this.#tuning = tuning;
    this.#run = run;
    // The library's inactivity timeout (a private 30 s) would reconnect a quiet watch between
    // two bookmarks; the watchdog is the one that decides, this is only a backstop behind it.
    (this as unknown as { requestTimeoutMs: number }).requestTimeoutMs = tuning.watchdog * 2;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: WatchCallback,
    done: DoneCallback,
  ): Promise<AbortController> {
    const run = this.#run();
    if (run.dead) return abortedController();
    const t = this.#tuning.watchTimeoutSeconds;
    const params = {
      ...queryParams,
      allowWatchBookmarks: true,
      timeoutSeconds: Math.round(t + Math.random() * t),
    };
    let ended = false;
    let controller: AbortController | undefined;
    try {
      controller = await super.watch(
        path,
        params,
        (phase, obj, watchObj) => {
          if (run.dead) return;
          this.onEvent(phase, obj);
          callback(phase, obj, watchObj);
        },
        (err) => {
          ended = true;
          if (controller) run.watches.delete(controller);
          done(err);
        },
      );
    } catch (err) {
      // Before the request (credentials, no current cluster): the library would leave this
      // rejection unhandled and its informer stopped for good; report it as a watch error.
      if (!ended) done(err);
      return abortedController();
    }
    if (run.dead) {
      controller.abort();
      return controller;
    }
    if (!ended) {
      run.watches.add(controller);
      this.onOpen();
    }
    return controller;
  }
}

function abortedController(): AbortController {
  const c = new AbortController();
  c.abort();
  return c;
}

/** A short message for logs and /status, whatever shape the error has. */
export function describeError(err: unknown): string {
  if (err === null || err === undefined) return "unknown error";
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : String(err);
  // ApiException from the generated client: its message embeds the headers, so say what the
  // Status body says instead (some codes come without a body: then the message's own line).
  if (typeof e.code === "number" && "headers" in (err as object)) {
    const detail = statusMessage(e.body) ?? /Message: (.*)/.exec(message)?.[1] ?? "";
    return `HTTP ${e.code}: ${detail}`.slice(0, 300);
  }
  // A watch request answered with an error status (the library's own Error).
  if (typeof e.statusCode === "number") return `HTTP ${e.statusCode}: ${message}`;
  const cause = (err as { cause?: { message?: unknown } }).cause?.message;
  return cause ? `${message}: ${String(cause)}` : message;
}

function statusMessage(body: unknown): string | undefined {
  let b = body;
  if (typeof body === "string") {
    try {
      b = JSON.parse(body);
    } catch {
      return body || undefined;
    }
  }
  const m = (b as { message?: unknown } | null | undefined)?.message;
  return typeof m === "string" ? m : undefined;
}

const REFUSAL_HINT: Record<number, string> = {
  401: "the API server does not accept coldfront's credentials",
  403: "check the RBAC rules in deploy/RBAC.md",
  404: "the API server does not serve this resource (is its CRD installed?)",
};

/** 401, 403 or 404 from the API server (on the list or on the watch request), else undefined. */
function refusal(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | undefined;
  const code = typeof e?.code === "number" ? e.code : e?.statusCode;
  return code === 401 || code === 403 || code === 404 ? code : undefined;
}

/** Request options that let `signal` abort a call of the generated client (it has no timeout). */
export function abortable(signal: AbortSignal): ConfigurationOptions<ObservableMiddleware> {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (res: ResponseContext) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: "append",
  };
}
