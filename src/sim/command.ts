/**
 * `coldfront sim [flags]`: the vLLM look-alike (DESIGN.md "The simulator"). Flags are checked
 * at the door (ConfigError, exit 2, naming the flag); SIGTERM or SIGINT closes it and exits 0.
 */
import { parseArgs } from "node:util";
import { parseDuration } from "../config/units.js";
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

const OPTIONS = {
  port: { type: "string" },
  host: { type: "string" },
  model: { type: "string" },
  "startup-delay": { type: "string" },
  "startup-mode": { type: "string" },
  ttft: { type: "string" },
  itl: { type: "string" },
  "max-num-seqs": { type: "string" },
  "max-tokens": { type: "string" },
  "max-model-len": { type: "string" },
  seed: { type: "string" },
  output: { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const d = SIM_DEFAULTS;
export const SIM_USAGE = `usage: coldfront sim [flags]   (a vLLM look-alike: OpenAI chat and completions, /health, /metrics)
  --port N              listen port (${d.port}; 0 picks one)
  --host ADDR           listen address (${d.host})
  --model NAME          served model name; other names get 404 (${d.model})
  --startup-delay DUR   simulated model loading, e.g. 30s (0)
  --startup-mode MODE   closed: port refused until loaded, as vLLM; unready: port open, 503 until loaded (${d.startupMode})
  --ttft DUR            time to first token once scheduled (0ms)
  --itl DUR             time between tokens (0ms)
  --max-num-seqs N      sequences generated at once; the rest wait FIFO (${d.maxNumSeqs})
  --max-tokens N        completion length when the request sets none (${d.maxTokens})
  --max-model-len N     prompt plus completion tokens a request may ask for (${d.maxModelLen})
  --output MODE         echo: the prompt's words back; seeded: words from a PRNG of seed and prompt (${d.output})
  --seed N              seed for --output seeded; a request's own "seed" wins (${d.seed})
  --log-level LEVEL     ${LOG_LEVELS.join(", ")} (${d.logLevel})`;

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
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; args: string[] }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n${SIM_USAGE}`);
  }
  const v = parsed.values;
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
