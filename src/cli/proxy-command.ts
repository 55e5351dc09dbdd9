import { parseArgs } from "node:util";
import { startApp } from "../app.js";
import { readConfigFile, validateConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import { onStopRequests } from "./stop-requests.js";

const OPTIONS = {
  config: { type: "string" },
  upstream: { type: "string" },
  "probe-url": { type: "string" },
  listen: { type: "string" },
  admin: { type: "string" },
  "log-level": { type: "string" },
} as const;

/** The single-target flags of DESIGN.md, validated by the same schema as a file. */
async function configFromArgs(argv: string[]): Promise<Config> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; args: string[] }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const v = parsed.values;
  // Flags lay over the file (or stand alone for a single target); one schema validates both.
  const overrides = {
    ...(v.listen ? { listen: v.listen } : {}),
    ...(v.admin ? { admin: v.admin } : {}),
    ...(v["log-level"] ? { log: { level: v["log-level"] } } : {}),
  };
  if (v.config !== undefined) {
    const single = (["upstream", "probe-url"] as const).filter((k) => v[k] !== undefined);
    if (single.length > 0) throw new ConfigError(`--config cannot be combined with --${single.join(", --")}`);
    return validateConfig({ ...(await readConfigFile(v.config)), ...overrides }, `config file ${v.config}`);
  }
  if (v.upstream === undefined)
    throw new ConfigError("give --config FILE, or --upstream URL for a single target");
  return validateConfig(
    {
      ...overrides,
      targets: [
        {
          name: "default",
          upstream: v.upstream,
          ...(v["probe-url"] ? { readiness: { probe: { url: v["probe-url"] } } } : {}),
        },
      ],
    },
    "flags",
  );
}

export async function runProxyCommand(argv: string[]): Promise<void> {
  const config = await configFromArgs(argv);
  const app = await startApp(config);
  onStopRequests({
    stop(reason) {
      app.log.info({ reason, gracePeriodMs: config.shutdown.gracePeriod }, "shutting down");
      app.shutdown().then(
        () => process.exit(0),
        (err: Error) => {
          app.log.error({ err: err.message }, "shutdown failed");
          process.exit(1);
        },
      );
    },
    force(reason) {
      app.log.warn({ reason }, "second signal: exiting now");
      process.exit(1);
    },
  });
}
