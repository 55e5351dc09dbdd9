/**
 * A real Prometheus for tests: Debian's `prometheus` started as a child process on a free
 * 127.0.0.1 port, with a temporary config and TSDB, scraping the given targets every second.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { Upstream } from "../helpers/upstream.js";

export interface ScrapeJob {
  readonly job: string;
  /** host:port */
  readonly target: string;
  /** Target labels, as a ServiceMonitor would add (namespace, ...). */
  readonly labels?: Record<string, string>;
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export class Prometheus {
  readonly url: string;
  readonly #child: ChildProcess;
  readonly #dir: string;
  #stderr = "";

  private constructor(url: string, child: ChildProcess, dir: string) {
    this.url = url;
    this.#child = child;
    this.#dir = dir;
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      // Keep the tail only: enough to explain a failure.
      this.#stderr = (this.#stderr + d).slice(-4000);
    });
  }

  /** Starts Prometheus and resolves once it reports ready (at most `ms`); stop() it after use. */
  static async start(binary: string, jobs: readonly ScrapeJob[], ms = 30_000): Promise<Prometheus> {
    const dir = mkdtempSync(join(tmpdir(), "coldfront-prometheus-"));
    const config = {
      global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
      scrape_configs: jobs.map((j) => ({
        job_name: j.job,
        static_configs: [{ targets: [j.target], ...(j.labels ? { labels: j.labels } : {}) }],
      })),
    };
    writeFileSync(join(dir, "prometheus.yml"), stringify(config));
    const port = await Upstream.reservePort();
    const child = spawn(
      binary,
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const prom = new Prometheus(`http://127.0.0.1:${port}`, child, dir);
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (child.exitCode !== null || child.signalCode !== null) {
        await prom.stop();
        throw new Error(`prometheus exited early: ${prom.#stderr}`);
      }
      try {
        if ((await fetch(`${prom.url}/-/ready`, { signal: AbortSignal.timeout(1000) })).ok) return prom;
      } catch {}
      await new Promise((r) => setTimeout(r, 200));
    }
    await prom.stop();
    throw new Error(`prometheus not ready within ${ms} ms: ${prom.#stderr}`);
  }

  /** An instant query; rejects with Prometheus' own error for invalid PromQL. */
  async query(expr: string): Promise<PromSample[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`, {
      signal: AbortSignal.timeout(5000),
    });
    const body = (await res.json()) as { status: string; error?: string; data?: { result: PromSample[] } };
    if (body.status !== "success") throw new Error(`query ${expr}: ${body.error ?? res.status}`);
    return body.data?.result ?? [];
  }

  /**
   * Polls `expr` until its single sample equals `expected` (at most `ms`); throws with the last
   * answer otherwise. No series counts as "no value", never as 0.
   */
  async waitForValue(expr: string, expected: number, ms = 30_000): Promise<void> {
    const end = Date.now() + ms;
    let last = "no answer";
    while (Date.now() < end) {
      const result = await this.query(expr);
      last = JSON.stringify(result);
      if (result.length === 1 && Number(result[0]?.value[1]) === expected) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`${expr}: expected ${expected} within ${ms} ms, last answer ${last}`);
  }

  /** Kills Prometheus (bounded) and removes its files. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
