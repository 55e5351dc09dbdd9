import { readConfigFile, validateConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import { commandUsage, type Flag, HELP_FLAG, parseFlags } from "./flags.js";
import { onStopRequests } from "./stop-requests.js";

/** The flags of `coldfront proxy` (DESIGN.md "Configuration": a file, or flags for one target). */
export const PROXY_FLAGS: readonly Flag[] = [
  {
    name: "config",
    value: "FILE",
    meaning: 'the YAML config (README "Configuration"); or --upstream for one target',
  },
  {
    name: "upstream",
    value: "URL",
    meaning: "without --config: the one target's upstream, e.g. http://gateway:80",
  },
  {
    name: "probe-url",
    value: "URL",
    meaning: "without --config: the target is ready while this answers 2xx",
    default: "none, always ready",
  },
  {
    name: "listen",
    value: "ADDR",
    meaning: "the client port, host:port",
    default: "the file's listen, else 0.0.0.0:8080",
  },
  {
    name: "admin",
    value: "ADDR",
    meaning: "the admin port (metrics, probes, /status, KEDA), host:port",
    default: "the file's admin, else 0.0.0.0:9090",
  },
  {
    name: "log-level",
    value: "LEVEL",
    meaning: "fatal, error, warn, info, debug, trace or silent",
    default: "the file's log.level, else info",
  },
  HELP_FLAG,
];

export const PROXY_USAGE = commandUsage(
  "coldfront proxy --config FILE | --upstream URL [--probe-url URL] [flags]",
  "The buffering proxy: holds requests while a target is cold, publishes the held count, replays them once ready.",
  PROXY_FLAGS,
);

/** The single-target flags of DESIGN.md, validated by the same schema as a file; undefined for --help. */
async function configFromArgs(argv: string[]): Promise<Config | undefined> {
  const v = parseFlags("proxy", PROXY_FLAGS, argv) as Record<string, string | undefined> & {
    help?: boolean;
  };
  if (v.help) return undefined;
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
    throw new ConfigError(
      "give --config FILE, or --upstream URL for a single target (coldfront proxy --help)",
    );
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
  if (config === undefined) {
    process.stdout.write(`${PROXY_USAGE}\n`);
    return;
  }
  // Loaded only to run: --help and a bad flag answer without loading the proxy.
  const { startApp } = await import("../app.js");
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
