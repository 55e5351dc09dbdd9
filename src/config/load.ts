import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.js";
import { type Config, configSchema } from "./schema.js";

/** `targets[0].limits.holdTimeout` from zod's path array. */
function keyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? String(p) : `.${String(p)}`;
  }
  return out || "(root)";
}

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") {
    return `${keyPath(issue.path)}: unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
  }
  return `${keyPath(issue.path)}: ${issue.message}`;
}

/** Validate an already-parsed object; throws ConfigError naming every bad key. */
export function validateConfig(raw: unknown, source = "config"): Config {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    const lines = result.error.issues.map(describe);
    throw new ConfigError(`invalid ${source}:\n  ${lines.join("\n  ")}`);
  }
  return result.data;
}

/** The file's YAML as plain data, not yet validated (flags may still be laid over it). */
export async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== "object" || Array.isArray(raw))
    throw new ConfigError(`config file ${file}: expected a mapping at the top`);
  return raw as Record<string, unknown>;
}

export async function loadConfigFile(file: string): Promise<Config> {
  return validateConfig(await readConfigFile(file), `config file ${file}`);
}
