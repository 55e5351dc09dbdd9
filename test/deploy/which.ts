import { statSync } from "node:fs";
import { join } from "node:path";

/** The path of the executable `name` on PATH, if there is one (tests skip what needs a missing tool). */
export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (!dir) continue;
    try {
      if (statSync(join(dir, name)).isFile()) return join(dir, name);
    } catch {}
  }
  return undefined;
}
