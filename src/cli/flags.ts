/**
 * A command's flags, declared once: what `parseArgs` parses, what `--help` prints (every flag
 * with its meaning and its default), and the messages for a flag that is unknown or lacks its
 * value (ConfigError: exit 2, naming the flag and pointing at `--help`).
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../errors.js";

export interface Flag {
  /** The long name, without `--`. */
  readonly name: string;
  /** One letter, without `-`. */
  readonly short?: string;
  /** What the value looks like (`FILE`, `URL`, `N`); absent for an on/off flag. */
  readonly value?: string;
  /** One line: what it does. */
  readonly meaning: string;
  /** What applies when the flag is not given, as a user would write it; on/off flags are off. */
  readonly default?: string;
}

/** `-h, --help`, which every command has. */
export const HELP_FLAG: Flag = { name: "help", short: "h", meaning: "print this help and exit" };

/** The flags as a table: one line per flag, its meaning, then its default. */
export function flagTable(flags: readonly Flag[]): string {
  const left = flags.map(
    (f) => `${f.short ? `-${f.short}, ` : "    "}--${f.name}${f.value ? ` ${f.value}` : ""}`,
  );
  const width = Math.max(...left.map((l) => l.length)) + 2;
  return flags
    .map((f, i) => {
      const dflt = f.value === undefined ? "off" : (f.default ?? "none");
      return `  ${left[i]!.padEnd(width)}${f.meaning} (default: ${dflt})`;
    })
    .join("\n");
}

/** `usage: <synopsis>`, a summary line, then the flag table. */
export function commandUsage(synopsis: string, summary: string, flags: readonly Flag[]): string {
  return `usage: ${synopsis}\n${summary}\n\nflags:\n${flagTable(flags)}`;
}

export type FlagValues = Record<string, string | boolean | undefined>;

/**
 * Parses `argv` against `flags` (strict, no positionals) for `coldfront <command>`. Throws
 * ConfigError for an unknown flag, a missing value or a stray argument, naming it and pointing at
 * `coldfront <command> --help`.
 *
 * @example
 * const v = parseFlags("proxy", PROXY_FLAGS, ["--config", "c.yaml"]);
 * v.config; // "c.yaml"
 */
export function parseFlags(command: string, flags: readonly Flag[], argv: readonly string[]): FlagValues {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const f of flags) {
    options[f.name] = {
      type: f.value === undefined ? "boolean" : "string",
      ...(f.short ? { short: f.short } : {}),
    };
  }
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false })
      .values as FlagValues;
  } catch (err) {
    const problem = flagProblem(err as Error & { code?: string }, flags);
    throw new ConfigError(`${command}: ${problem}; coldfront ${command} --help lists the flags`);
  }
}

/** node:util's parse error, said shortly and in the command's terms. */
function flagProblem(err: Error & { code?: string }, flags: readonly Flag[]): string {
  const quoted = /'([^']+)'/.exec(err.message)?.[1] ?? "";
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag '${quoted}'`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument '${quoted}'`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE": {
      // "Option '-c, --config <value>' argument missing" or "Option '--help' does not take an argument".
      const name = /--([\w-]+)/.exec(quoted)?.[1] ?? quoted;
      const flag = flags.find((f) => f.name === name);
      return flag?.value ? `--${name} needs a value (${flag.value})` : `--${name} takes no value`;
    }
    default:
      return err.message;
  }
}
