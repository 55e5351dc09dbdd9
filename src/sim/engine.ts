/**
 * The simulator's scheduler: at most `maxNumSeqs` sequences generate at once, the excess waits
 * in arrival order, as in vLLM's scheduler (`--max-num-seqs`). A running sequence gets its first
 * token `ttft` after it leaves the waiting queue, then one token every `itl`.
 *
 * Invariants: every sequence is in exactly one of waiting, running or done; a slot is freed the
 * moment its sequence finishes or is aborted, and the head of the waiting queue takes it at
 * once; a sequence that is not running has no timer; close() leaves no timer behind.
 */
import type { FinishReason } from "./text.js";

/** What the engine reports, for vLLM's metrics (metrics.ts). Seconds, as Prometheus wants. */
export interface EngineObserver {
  /** A sequence left the waiting queue after `queueSeconds`. */
  scheduled(queueSeconds: number): void;
  /** Its first token: `seconds` since arrival (vLLM's TTFT counts the queue), prompt prefilled. */
  firstToken(seconds: number, promptTokens: number): void;
  generated(tokens: number): void;
  /** "abort": the client left; e2e is only measured for sequences that finished. */
  finished(reason: FinishReason | "abort", e2eSeconds: number): void;
}

export interface SeqSink {
  /**
   * Tokens [from, to) are generated; `finish` is set on the last call, which may carry no new
   * token. A stream gets one call per token (all the rest at once when itl is 0); a non-stream
   * request gets one call at the end.
   */
  emit(from: number, to: number, finish: FinishReason | null): void;
}

export interface SeqRequest {
  readonly promptTokens: number;
  readonly tokens: readonly string[];
  readonly finishReason: FinishReason;
  readonly stream: boolean;
  readonly sink: SeqSink;
}

export interface SeqHandle {
  /** The client left: the sequence stops and frees its slot (no-op once finished). */
  abort(): void;
}

export interface EngineOptions {
  readonly maxNumSeqs: number;
  readonly ttft: number;
  readonly itl: number;
  readonly observer: EngineObserver;
}

type State = "waiting" | "running" | "done";

/** setTimeout's ceiling; past it Node fires after 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

class Sequence implements SeqHandle {
  state: State = "waiting";
  /** Tokens already handed to the sink. */
  sent = 0;
  timer: NodeJS.Timeout | undefined;
  immediate: NodeJS.Immediate | undefined;
  readonly arrived = performance.now();

  constructor(
    readonly request: SeqRequest,
    readonly engine: Engine,
  ) {}

  abort(): void {
    this.engine.abort(this);
  }
}

export class Engine {
  // Sets keep insertion order and delete in O(1): a FIFO from which a client can leave.
  readonly #waiting = new Set<Sequence>();
  readonly #running = new Set<Sequence>();
  readonly #o: EngineOptions;

  constructor(options: EngineOptions) {
    this.#o = options;
  }

  get running(): number {
    return this.#running.size;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  get maxNumSeqs(): number {
    return this.#o.maxNumSeqs;
  }

  submit(request: SeqRequest): SeqHandle {
    const seq = new Sequence(request, this);
    this.#waiting.add(seq);
    this.#schedule();
    return seq;
  }

  abort(seq: Sequence): void {
    if (seq.state === "done") return;
    this.#clearTimer(seq);
    if (seq.state === "waiting") this.#waiting.delete(seq);
    else this.#running.delete(seq);
    seq.state = "done";
    this.#o.observer.finished("abort", (performance.now() - seq.arrived) / 1000);
    this.#schedule();
  }

  /** Drops every sequence without a word to its sink (the server closes the sockets). */
  close(): void {
    for (const seq of [...this.#running, ...this.#waiting]) {
      this.#clearTimer(seq);
      seq.state = "done";
    }
    this.#running.clear();
    this.#waiting.clear();
  }

  #schedule(): void {
    while (this.#running.size < this.#o.maxNumSeqs) {
      const seq = this.#waiting.values().next().value;
      if (seq === undefined) return;
      this.#waiting.delete(seq);
      this.#running.add(seq);
      seq.state = "running";
      this.#o.observer.scheduled((performance.now() - seq.arrived) / 1000);
      this.#after(seq, this.#o.ttft, this.#onFirstToken);
    }
  }

  readonly #onFirstToken = (seq: Sequence): void => {
    this.#o.observer.firstToken((performance.now() - seq.arrived) / 1000, seq.request.promptTokens);
    const n = seq.request.tokens.length;
    if (n <= 1 || this.#o.itl === 0) {
      this.#finish(seq);
    } else if (!seq.request.stream) {
      // Nobody sees the tokens in between: one timer for the rest instead of one per token.
      this.#after(seq, Math.min(MAX_TIMER_MS, (n - 1) * this.#o.itl), this.#finish);
    } else {
      this.#emit(seq, 1, null);
      this.#after(seq, this.#o.itl, this.#onNextToken);
    }
  };

  readonly #onNextToken = (seq: Sequence): void => {
    if (seq.sent + 1 >= seq.request.tokens.length) {
      this.#finish(seq);
      return;
    }
    this.#emit(seq, seq.sent + 1, null);
    this.#after(seq, this.#o.itl, this.#onNextToken);
  };

  readonly #finish = (seq: Sequence): void => {
    seq.timer = undefined;
    seq.immediate = undefined;
    this.#running.delete(seq);
    seq.state = "done";
    const reason = seq.request.finishReason;
    this.#o.observer.finished(reason, (performance.now() - seq.arrived) / 1000);
    this.#emit(seq, seq.request.tokens.length, reason);
    this.#schedule();
  };

  #emit(seq: Sequence, to: number, finish: FinishReason | null): void {
    const from = seq.sent;
    seq.sent = to;
    if (to > from) this.#o.observer.generated(to - from);
    seq.request.sink.emit(from, to, finish);
  }

  /** setImmediate for 0 (setTimeout would clamp it to 1 ms), else setTimeout. */
  #after(seq: Sequence, ms: number, fn: (seq: Sequence) => void): void {
    if (ms === 0) seq.immediate = setImmediate(fn, seq);
    else seq.timer = setTimeout(fn, ms, seq);
  }

  #clearTimer(seq: Sequence): void {
    if (seq.timer !== undefined) clearTimeout(seq.timer);
    if (seq.immediate !== undefined) clearImmediate(seq.immediate);
    seq.timer = undefined;
    seq.immediate = undefined;
  }
}
