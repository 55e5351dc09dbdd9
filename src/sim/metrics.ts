/**
 * vLLM's Prometheus metrics (names, types, labels and buckets of vLLM V1's
 * `vllm/v1/metrics/loggers.py`), so that dashboards, KEDA triggers on
 * `vllm:num_requests_waiting` and the inference gateway's scorers read the simulator as they
 * read vLLM. Gauges are read from the engine at scrape time; every series exists from start.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineObserver } from "./engine.js";
import type { FinishReason } from "./text.js";

export interface EngineLoad {
  readonly running: number;
  readonly waiting: number;
  readonly maxNumSeqs: number;
}

const LABELS = ["model_name", "engine"] as const;
type Label = (typeof LABELS)[number];

const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
  2560,
];
const REQUEST_BUCKETS = [
  0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];

const FINISHED_REASONS = ["stop", "length", "abort"] as const;

export class SimMetrics implements EngineObserver {
  readonly registry = new Registry();
  // Label children resolved once: the engine calls these per token.
  readonly #prompt: Counter.Internal;
  readonly #generation: Counter.Internal;
  readonly #success: Record<FinishReason | "abort", Counter.Internal>;
  readonly #ttft: Histogram.Internal<Label>;
  readonly #e2e: Histogram.Internal<Label>;
  readonly #queue: Histogram.Internal<Label>;

  /** `load` is read at scrape time (the engine is built with this object as its observer). */
  constructor(model: string, load: () => EngineLoad) {
    const labels = { model_name: model, engine: "0" };
    const registers = [this.registry];
    const labelNames = LABELS;
    new Gauge({
      name: "vllm:num_requests_running",
      help: "Number of requests in model execution batches.",
      labelNames,
      registers,
      collect() {
        this.set(labels, load().running);
      },
    });
    new Gauge({
      name: "vllm:num_requests_waiting",
      help: "Number of requests waiting to be processed.",
      labelNames,
      registers,
      collect() {
        this.set(labels, load().waiting);
      },
    });
    new Gauge({
      name: "vllm:kv_cache_usage_perc",
      help: "KV-cache usage. 1 means 100 percent usage.",
      labelNames,
      registers,
      // Simulated as the share of sequence slots in use: a full batch is a full cache.
      collect() {
        const l = load();
        this.set(labels, l.running / l.maxNumSeqs);
      },
    });
    this.#prompt = new Counter({
      name: "vllm:prompt_tokens_total",
      help: "Number of prefill tokens processed.",
      labelNames,
      registers,
    }).labels(labels);
    this.#prompt.inc(0);
    this.#generation = new Counter({
      name: "vllm:generation_tokens_total",
      help: "Number of generation tokens processed.",
      labelNames,
      registers,
    }).labels(labels);
    this.#generation.inc(0);
    const success = new Counter({
      name: "vllm:request_success_total",
      help: "Count of successfully processed requests.",
      labelNames: [...LABELS, "finished_reason"],
      registers,
    });
    this.#success = Object.fromEntries(
      FINISHED_REASONS.map((r) => [r, success.labels({ ...labels, finished_reason: r })]),
    ) as Record<FinishReason | "abort", Counter.Internal>;
    for (const child of Object.values(this.#success)) child.inc(0);
    const histogram = (name: string, help: string, buckets: number[]) => {
      const h = new Histogram({ name, help, labelNames, buckets, registers });
      h.zero(labels);
      return h.labels(labels);
    };
    this.#ttft = histogram(
      "vllm:time_to_first_token_seconds",
      "Histogram of time to first token in seconds.",
      TTFT_BUCKETS,
    );
    this.#e2e = histogram(
      "vllm:e2e_request_latency_seconds",
      "Histogram of e2e request latency in seconds.",
      REQUEST_BUCKETS,
    );
    this.#queue = histogram(
      "vllm:request_queue_time_seconds",
      "Histogram of time spent in WAITING phase for request.",
      REQUEST_BUCKETS,
    );
  }

  scheduled(queueSeconds: number): void {
    this.#queue.observe(queueSeconds);
  }

  firstToken(seconds: number, promptTokens: number): void {
    this.#ttft.observe(seconds);
    this.#prompt.inc(promptTokens);
  }

  generated(tokens: number): void {
    this.#generation.inc(tokens);
  }

  finished(reason: FinishReason | "abort", e2eSeconds: number): void {
    this.#success[reason].inc();
    if (reason !== "abort") this.#e2e.observe(e2eSeconds);
  }
}
