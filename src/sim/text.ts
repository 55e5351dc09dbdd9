/**
 * The simulator's "model": deterministic text, so tests can check content. A token is a word
 * (a run of non-space characters); there is no tokenizer, and counts in usage and metrics are
 * word counts.
 */
import type { OutputMode } from "./options.js";

export type FinishReason = "stop" | "length";

export interface Completion {
  /** One word per token; the text is the words joined by single spaces. */
  readonly tokens: readonly string[];
  /** "stop" when the text ended on its own (echo ran out of words), "length" at max tokens. */
  readonly finishReason: FinishReason;
}

export function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w.length > 0);
}

/** The text of a token on the wire: words after the first carry their leading space. */
export function tokenText(tokens: readonly string[], index: number): string {
  return index === 0 ? (tokens[0] as string) : ` ${tokens[index] as string}`;
}

const VOCABULARY = (
  "the model is warm cold start token request held queue ready scale from zero and a GPU wakes " +
  "up then answers every client in order while KEDA watches pending count of waiting streams " +
  "latency not error replica node cluster gateway endpoint slice probe health load weights " +
  "cache block prefill decode batch sequence fast slow simulated vLLM coldfront proxy buffer " +
  "replay signal metric it works"
).split(" ");

/** FNV-1a, 32 bits: a stable seed from text. */
function hash(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** mulberry32: small, fast, and the same sequence on every platform. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * What the model "generates" for `source` (the last chat message, or the completion prompt).
 * echo: the source's words, up to maxTokens ("stop" when they run out first). seeded: exactly
 * maxTokens words drawn by a PRNG seeded from `seed` and the source, so the same request gives
 * the same text whatever else runs beside it.
 */
export function complete(source: string, maxTokens: number, mode: OutputMode, seed: number): Completion {
  if (mode === "echo") {
    const all = words(source);
    if (all.length <= maxTokens) return { tokens: all, finishReason: "stop" };
    return { tokens: all.slice(0, maxTokens), finishReason: "length" };
  }
  const next = prng(hash(source, seed));
  const tokens = Array.from(
    { length: maxTokens },
    () => VOCABULARY[Math.floor(next() * VOCABULARY.length)] as string,
  );
  return { tokens, finishReason: "length" };
}
