/**
 * Ready when a URL answers 2xx (DESIGN.md "Readiness sources": probe). Polls every `interval`,
 * and every `heldInterval` while requests are held, so a release follows readiness within a
 * fraction of a second when it matters and costs little when it does not.
 *
 * Hysteresis (DESIGN.md "Bounds, identity and long cold starts": `failureThreshold`): a ready
 * target turns cold only after `failureThreshold` failed probes in a row, so one lost probe does
 * not turn requests into `target_cold`; after a failure it probes at the held pace, so a real
 * outage is still confirmed within a few `heldInterval`s. Cold to ready is immediate, on the
 * first success. The process source likewise waits for 3 failures (readiness/process.ts).
 */
import type { FastifyBaseLogger } from "fastify";
import { Agent, request } from "undici";
import { type Demand, Listeners, type ReadinessSource } from "./source.js";

export interface ProbeOptions {
  readonly url: string;
  readonly interval: number;
  readonly heldInterval: number;
  readonly timeout: number;
  /** Failed probes in a row before a ready target counts as cold; 3 when not given. */
  readonly failureThreshold?: number;
}

const DEFAULT_FAILURE_THRESHOLD = 3;

export class ProbeSource implements ReadinessSource {
  readonly kind: string = "probe";
  readonly #target: string;
  readonly #o: ProbeOptions;
  readonly #log: FastifyBaseLogger;
  readonly #listeners = new Listeners<boolean>();
  // Its own short-lived connections: a probe must never queue behind proxied traffic.
  readonly #agent = new Agent({ keepAliveTimeout: 1000, connections: 2 });
  #ready = false;
  #synced = false;
  #held = false;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = true;
  #probes = 0;
  /** Failed probes in a row, since the last success. */
  #failures = 0;
  #lastError: string | undefined;

  constructor(target: string, options: ProbeOptions, log: FastifyBaseLogger) {
    this.#target = target;
    this.#o = options;
    this.#log = log;
  }

  get ready(): boolean {
    return this.#ready;
  }

  get synced(): boolean {
    return this.#synced;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#probe();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#agent.close();
  }

  onChange(listener: (ready: boolean) => void): () => void {
    return this.#listeners.add(listener);
  }

  demand(d: Demand): void {
    const held = d.pending > 0;
    if (held === this.#held) return;
    this.#held = held;
    // Demand just arrived: probe now rather than at the end of a long idle interval.
    if (held && !this.#running && !this.#stopped) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      void this.#probe();
    }
  }

  status(): Record<string, unknown> {
    return {
      url: this.#o.url,
      probes: this.#probes,
      failuresInARow: this.#failures,
      lastError: this.#lastError ?? null,
    };
  }

  /** One probe; schedules the next. Never throws: unreachable is simply not ready. */
  async #probe(): Promise<void> {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    const { ok, error } = await probeOnce(this.#o.url, this.#agent, this.#o.timeout);
    this.#lastError = error;
    this.#probes++;
    this.#running = false;
    if (this.#stopped) return;
    this.#synced = true;
    this.#failures = ok ? 0 : this.#failures + 1;
    const threshold = this.#o.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD;
    const ready = ok || (this.#ready && this.#failures < threshold);
    if (ready !== this.#ready) {
      this.#ready = ready;
      this.#log.info(
        {
          target: this.#target,
          ready,
          url: this.#o.url,
          ...(ready ? {} : { failures: this.#failures, err: error }),
        },
        "probe readiness changed",
      );
      this.#listeners.emit(ready);
    } else if (!ok && ready) {
      this.#log.debug(
        { target: this.#target, url: this.#o.url, failures: this.#failures, threshold, err: error },
        "probe failed; still ready until failureThreshold",
      );
    }
    // Fast while requests wait for a cold target, and while a failure of a ready one is unconfirmed.
    const fast = ready ? this.#failures > 0 : this.#held;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        void this.#probe();
      },
      fast ? this.#o.heldInterval : this.#o.interval,
    );
  }
}

/**
 * One health check: `url` answers 2xx within `timeout`. Never throws; `error` says why not. Shared
 * by the sources that poll a URL (probe, process).
 */
export async function probeOnce(
  url: string,
  dispatcher: Agent,
  timeout: number,
): Promise<{ ok: boolean; error: string | undefined }> {
  try {
    const res = await request(url, {
      dispatcher,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      signal: AbortSignal.timeout(timeout),
    });
    await res.body.dump();
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    return { ok, error: ok ? undefined : `status ${res.statusCode}` };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}
