/** Runs clients/burst.js: N concurrent requests, each with its own connection and timestamps. */
import { join } from "node:path";
import { targetCounts } from "./admin.js";
import { benchScript } from "./paths.js";
import { Child, poll } from "./procs.js";
import type { Workspace } from "./systems.js";

export interface BurstOutcome {
  /** Epoch ms per request. */
  readonly sent: number[];
  readonly done: number[];
  /** HTTP status, 0 when no answer came (see errors). */
  readonly status: number[];
  readonly errors: Record<string, number>;
}

export interface BurstClient {
  readonly child: Child;
  /** Waits (bounded by the client's own timeout plus a margin) and parses its report. */
  result(): Promise<BurstOutcome>;
}

export function startBurst(
  ws: Workspace,
  o: {
    url: string;
    n: number;
    bodyBytes?: number;
    timeoutMs: number;
    /** Spread the N requests at this many per second instead of sending them at once. */
    rate?: number;
    /** The backend's generation time for each (x-bench-gen-ms). */
    genMs?: number;
    /** Names the log file (several clients of one N may run at once). */
    tag?: string;
  },
): BurstClient {
  const child = Child.spawn(
    "burst",
    process.execPath,
    [
      benchScript("clients/burst.js"),
      "--url",
      o.url,
      "--n",
      String(o.n),
      "--body-bytes",
      String(o.bodyBytes ?? 256),
      "--timeout-ms",
      String(o.timeoutMs),
      ...(o.rate ? ["--rate", String(o.rate)] : []),
      ...(o.genMs ? ["--gen-ms", String(o.genMs)] : []),
    ],
    { logFile: join(ws.dir, `burst-${o.tag ?? o.n}.log`), role: "load" },
  );
  return {
    child,
    async result() {
      const code = await child.wait(o.timeoutMs + 30_000);
      if (code !== 0) throw new Error(`burst client failed: ${child.describe()}`);
      return JSON.parse(child.stdout.trim().split("\n").pop() ?? "") as BurstOutcome;
    },
  };
}

/** "200 x 998, ECONNREFUSED x 2": what the clients got. */
export function outcomeSummary(o: BurstOutcome): string {
  const counts = new Map<string, number>();
  for (const s of o.status) if (s !== 0) counts.set(String(s), (counts.get(String(s)) ?? 0) + 1);
  for (const [code, n] of Object.entries(o.errors)) counts.set(code, (counts.get(code) ?? 0) + n);
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} × ${n}`)
    .join(", ");
}

/** Waits (at most 120 s) until coldfront holds all `n` of the burst for `target`. */
export async function waitAllHeld(
  client: BurstClient,
  adminUrl: string,
  target: string,
  n: number,
): Promise<void> {
  await poll(
    `${n} held requests`,
    async () => {
      if (!client.child.running) throw new Error(`burst client ended early: ${client.child.describe()}`);
      const c = await targetCounts(adminUrl, target);
      return c && c.pending >= n ? true : undefined;
    },
    120_000,
    100,
  );
}
