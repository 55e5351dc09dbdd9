/**
 * The simulator's options (DESIGN.md "The simulator"): one shape for the CLI flags and for
 * in-process use, checked once here with messages that name the flag.
 */
import type { FastifyBaseLogger } from "fastify";
import { ConfigError } from "../errors.js";

export const STARTUP_MODES = ["closed", "unready"] as const;
/**
 * closed: the port refuses connections until the model is "loaded", as vLLM does.
 * unready: the port is open at once, /health and inference answer 503 until loaded.
 */
export type StartupMode = (typeof STARTUP_MODES)[number];

export const OUTPUT_MODES = ["echo", "seeded"] as const;
/** echo: the prompt's words back; seeded: words from a PRNG seeded by seed and prompt. */
export type OutputMode = (typeof OUTPUT_MODES)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export interface SimOptions {
  /** 0 picks a free port. Default 8000, vLLM's. */
  readonly port: number;
  readonly host: string;
  /** The served model name: requests naming another model get vLLM's 404. */
  readonly model: string;
  /** Milliseconds of simulated model loading. */
  readonly startupDelay: number;
  readonly startupMode: StartupMode;
  /** Milliseconds from leaving the waiting queue to the first token. */
  readonly ttft: number;
  /** Milliseconds between tokens after the first. */
  readonly itl: number;
  /** Sequences generated at once; the excess waits FIFO (vllm:num_requests_waiting). */
  readonly maxNumSeqs: number;
  /** Completion length when a request names none. */
  readonly maxTokens: number;
  /** Prompt plus completion tokens a request may ask for; past it vLLM's 400. */
  readonly maxModelLen: number;
  readonly seed: number;
  readonly output: OutputMode;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /** A pino logger; by default one at logLevel on stdout. */
  readonly logger?: FastifyBaseLogger;
}

export const SIM_DEFAULTS: Omit<SimOptions, "logger"> = {
  port: 8000,
  host: "127.0.0.1",
  model: "coldfront-sim",
  startupDelay: 0,
  startupMode: "closed",
  ttft: 0,
  itl: 0,
  maxNumSeqs: 256,
  maxTokens: 16,
  maxModelLen: 8192,
  seed: 0,
  output: "seeded",
  logLevel: "info",
};

/** The flag that sets each option, so a message names what the user typed. */
const FLAG: Record<keyof typeof SIM_DEFAULTS, string> = {
  port: "--port",
  host: "--host",
  model: "--model",
  startupDelay: "--startup-delay",
  startupMode: "--startup-mode",
  ttft: "--ttft",
  itl: "--itl",
  maxNumSeqs: "--max-num-seqs",
  maxTokens: "--max-tokens",
  maxModelLen: "--max-model-len",
  seed: "--seed",
  output: "--output",
  logLevel: "--log-level",
};

function check(ok: boolean, key: keyof typeof SIM_DEFAULTS, what: string, value: unknown): void {
  if (!ok) throw new ConfigError(`${FLAG[key]}: expected ${what}, got ${JSON.stringify(value)}`);
}

const isInt = (v: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  Number.isInteger(v) && v >= min && v <= max;
const isMs = (v: number) => Number.isFinite(v) && v >= 0 && v <= 2_147_483_647;

/** Defaults laid under `given`, then every value checked; throws ConfigError naming the flag. */
export function resolveSimOptions(given: Partial<SimOptions> = {}): SimOptions {
  const o: SimOptions = { ...SIM_DEFAULTS, ...given };
  check(isInt(o.port, 0, 65535), "port", "a port number 0..65535", o.port);
  check(o.host.length > 0, "host", "a host name or address", o.host);
  check(o.model.length > 0, "model", "a model name", o.model);
  check(isMs(o.startupDelay), "startupDelay", "a duration", o.startupDelay);
  check(STARTUP_MODES.includes(o.startupMode), "startupMode", STARTUP_MODES.join(" or "), o.startupMode);
  check(isMs(o.ttft), "ttft", "a duration", o.ttft);
  check(isMs(o.itl), "itl", "a duration", o.itl);
  check(isInt(o.maxNumSeqs, 1), "maxNumSeqs", "an integer of at least 1", o.maxNumSeqs);
  check(isInt(o.maxModelLen, 1), "maxModelLen", "an integer of at least 1", o.maxModelLen);
  check(isInt(o.maxTokens, 1, o.maxModelLen), "maxTokens", "an integer 1..--max-model-len", o.maxTokens);
  check(isInt(o.seed, 0, 0xffff_ffff), "seed", "an integer 0..4294967295", o.seed);
  check(OUTPUT_MODES.includes(o.output), "output", OUTPUT_MODES.join(" or "), o.output);
  check(LOG_LEVELS.includes(o.logLevel), "logLevel", LOG_LEVELS.join(", "), o.logLevel);
  return o;
}
