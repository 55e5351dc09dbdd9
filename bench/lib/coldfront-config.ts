/**
 * What the coldfront under test accepts and defaults to, read from the build itself
 * (dist-bench/src/config/schema.js), so that a scenario can pass a key only when the build knows
 * it: an unknown key fails coldfront's start.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { DIST } from "./paths.js";

const SCHEMA = join(DIST, "src", "config", "schema.js");

export interface ColdfrontLimits {
  /** limits.maxBodyBytes: the default of the build, else 16 MiB (DESIGN.md). */
  readonly maxBodyBytes: number;
  /** limits.maxHeldBytes's default; undefined when the build has no such key. */
  readonly maxHeldBytes: number | undefined;
  /** How these were found, for the results. */
  readonly how: string;
}

function schemaText(): string {
  try {
    return readFileSync(SCHEMA, "utf8");
  } catch {
    return "";
  }
}

/** True when this build's config schema knows `key` (e.g. "maxHeldBytes"). */
export function schemaMentions(key: string): boolean {
  return schemaText().includes(key);
}

/** The limits' defaults, from parsing a minimal config with the build's own schema. */
export async function coldfrontLimits(): Promise<ColdfrontLimits> {
  const knowsBudget = schemaMentions("maxHeldBytes");
  try {
    const mod = (await import(pathToFileURL(SCHEMA).href)) as {
      configSchema?: {
        safeParse(x: unknown): { success: boolean; data?: { limits?: Record<string, unknown> } };
      };
    };
    const parsed = mod.configSchema?.safeParse({ targets: [{ name: "x", upstream: "http://127.0.0.1:1" }] });
    const limits = parsed?.success ? parsed.data?.limits : undefined;
    const body = limits?.maxBodyBytes;
    const held = limits?.maxHeldBytes;
    if (typeof body === "number") {
      return {
        maxBodyBytes: body,
        maxHeldBytes: knowsBudget && typeof held === "number" ? held : undefined,
        how: "the build's config schema defaults",
      };
    }
  } catch {}
  return {
    maxBodyBytes: 16 * 2 ** 20,
    maxHeldBytes: undefined,
    how: "DESIGN.md's 16 MiB (the build's schema could not be read)",
  };
}
