/** Reading a running coldfront from its admin port: the KEDA metrics-api answer and /metrics. */
import { nowMs } from "./procs.js";

export interface TargetCounts {
  readonly pending: number;
  readonly inFlight: number;
  readonly ready: boolean;
}

/** A JSON answer from a harness-side control path, or undefined if it did not answer in time. */
export async function getJson<T>(url: string, timeoutMs: number): Promise<T | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    return (await res.json()) as T;
  } catch {
    return undefined;
  }
}

/** This replica's counts for one target (`?scope=local`), or undefined if the admin port did not answer. */
export function targetCounts(adminUrl: string, target: string): Promise<TargetCounts | undefined> {
  return getJson<TargetCounts>(`${adminUrl}/keda/targets/${target}?scope=local`, 2000);
}

export interface Sample {
  /** Epoch ms. */
  readonly at: number;
  readonly pending: number;
  readonly inFlight: number;
}

/** Polls the counts every `interval` ms until stopped: the cold-burst chart's held and in-flight lines. */
export function startSampler(adminUrl: string, target: string, interval = 50) {
  const samples: Sample[] = [];
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> = Promise.resolve();
  const tick = () => {
    timer = undefined;
    current = (async () => {
      const at = nowMs();
      const c = await targetCounts(adminUrl, target);
      if (c) samples.push({ at, pending: c.pending, inFlight: c.inFlight });
      if (!stopped) timer = setTimeout(tick, Math.max(0, interval - (nowMs() - at)));
    })();
  };
  tick();
  return {
    samples,
    async stop(): Promise<Sample[]> {
      stopped = true;
      if (timer) clearTimeout(timer);
      await current;
      return samples;
    },
  };
}

/** The value of an unlabelled series in /metrics (prom-client's default process metrics). */
export function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)`, "m").exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/**
 * Scrapes /metrics. prom-client computes the event-loop delay percentiles over the time since
 * the previous scrape and then resets them, so two scrapes bracket a measured period.
 */
export async function scrape(adminUrl: string): Promise<string> {
  const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}
