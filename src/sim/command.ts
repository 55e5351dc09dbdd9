/**
 * `coldfront sim [flags]`: the vLLM look-alike (DESIGN.md "The simulator"). Flags are checked
 * at the door (ConfigError, exit 2, naming the flag); SIGTERM or SIGINT closes it and exits 0.
 */
import { commandUsage, type Flag, HELP_FLAG, parseFlags } from "../cli/flags.js";
import { formatDuration, parseDuration } from "../config/units.js";
import { ConfigError } from "../errors.js";
import {
  LOG_LEVELS,
  OUTPUT_MODES,
  type OutputMode,
  resolveSimOptions,
  SIM_DEFAULTS,
  type SimOptions,
  STARTUP_MODES,
  type StartupMode,
} from "./options.js";
import { startSim } from "./server.js";

const d = SIM_DEFAULTS;
/** The flags of `coldfront sim`, each with its default from SIM_DEFAULTS. */
export const SIM_FLAGS: readonly Flag[] = [
  { name: "port", value: "N", meaning: "listen port; 0 picks a free one", default: String(d.port) },
  { name: "host", value: "ADDR", meaning: "listen address", default: d.host },
  { name: "model", value: "NAME", meaning: "served model name; other names get 404", default: d.model },
  {
    name: "startup-delay",
    value: "DUR",
    meaning: "simulated model loading, e.g. 30s",
    default: formatDuration(d.startupDelay),
  },
  {
    name: "startup-mode",
    value: "MODE",
    meaning: "closed: port refused until loaded, as vLLM; unready: port open, 503 until loaded",
    default: d.startupMode,
  },
  {
    name: "ttft",
    value: "DUR",
    meaning: "time to first token once scheduled",
    default: formatDuration(d.ttft),
  },
  { name: "itl", value: "DUR", meaning: "time between tokens", default: formatDuration(d.itl) },
  {
    name: "max-num-seqs",
    value: "N",
    meaning: "sequences generated at once; the rest wait FIFO",
    default: String(d.maxNumSeqs),
  },
  {
    name: "max-tokens",
    value: "N",
    meaning: "completion length when the request sets none",
    default: String(d.maxTokens),
  },
  {
    name: "max-model-len",
    value: "N",
    meaning: "prompt plus completion tokens a request may ask for",
    default: String(d.maxModelLen),
  },
  {
    name: "output",
    value: "MODE",
    meaning: "echo: the prompt's words back; seeded: words from a PRNG of seed and prompt",
    default: d.output,
  },
  {
    name: "seed",
    value: "N",
    meaning: "seed for --output seeded; a request's own seed wins",
    default: String(d.seed),
  },
  { name: "log-level", value: "LEVEL", meaning: LOG_LEVELS.join(", "), default: d.logLevel },
  HELP_FLAG,
];

export const SIM_USAGE = commandUsage(
  "coldfront sim [flags]",
  "A vLLM look-alike: OpenAI chat and completions, streaming, /health, /metrics with vLLM's names.",
  SIM_FLAGS,
);

function duration(flag: string, text: string): number {
  const ms = text.trim() === "0" ? 0 : parseDuration(text);
  if (ms === undefined)
    throw new ConfigError(`--${flag}: expected a duration with a unit (250ms, 2s, 10m, 1h), got "${text}"`);
  return ms;
}

function integer(flag: string, text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(`--${flag}: expected a whole number, got "${text}"`);
  return Number(text);
}

function oneOf<T extends string>(flag: string, text: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text))
    throw new ConfigError(`--${flag}: expected ${allowed.join(" or ")}, got "${text}"`);
  return text as T;
}

/** The flags as SimOptions, checked; undefined for --help. */
export function simOptionsFromArgs(argv: string[]): SimOptions | undefined {
  const v = parseFlags("sim", SIM_FLAGS, argv) as Record<string, string | undefined> & {
    help?: boolean;
  };
  if (v.help) return undefined;
  const given: { -readonly [K in keyof SimOptions]?: SimOptions[K] } = {};
  if (v.port !== undefined) given.port = integer("port", v.port);
  if (v.host !== undefined) given.host = v.host;
  if (v.model !== undefined) given.model = v.model;
  if (v["startup-delay"] !== undefined) given.startupDelay = duration("startup-delay", v["startup-delay"]);
  if (v["startup-mode"] !== undefined)
    given.startupMode = oneOf<StartupMode>("startup-mode", v["startup-mode"], STARTUP_MODES);
  if (v.ttft !== undefined) given.ttft = duration("ttft", v.ttft);
  if (v.itl !== undefined) given.itl = duration("itl", v.itl);
  if (v["max-num-seqs"] !== undefined) given.maxNumSeqs = integer("max-num-seqs", v["max-num-seqs"]);
  if (v["max-tokens"] !== undefined) given.maxTokens = integer("max-tokens", v["max-tokens"]);
  if (v["max-model-len"] !== undefined) given.maxModelLen = integer("max-model-len", v["max-model-len"]);
  if (v.seed !== undefined) given.seed = integer("seed", v.seed);
  if (v.output !== undefined) given.output = oneOf<OutputMode>("output", v.output, OUTPUT_MODES);
  if (v["log-level"] !== undefined)
    given.logLevel = oneOf("log-level", v["log-level"], LOG_LEVELS) as SimOptions["logLevel"];
  return resolveSimOptions(given);
}

export async function runSimCommand(argv: string[]): Promise<void> {
  const options = simOptionsFromArgs(argv);
  if (options === undefined) {
    process.stdout.write(`${SIM_USAGE}\n`);
    return;
  }
  const sim = await startSim(options);
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(1);
    stopping = true;
    // A simulated GPU has nothing to drain: in-flight streams end where they are.
    sim.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // Closed mode opens its port only after the load delay: a busy port fails then, and exits 1.
  await sim.ready.catch((err: unknown) => {
    if (!stopping) throw err;
  });
}
