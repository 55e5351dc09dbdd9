#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=50
/**
 * coldfront's executable (package.json bin): `coldfront proxy ...`, `coldfront sim ...`,
 * `coldfront --version`, and `--help` for each.
 *
 * The V8 flags on the first line bound the heap of a proxy whose memory is its held requests:
 * the young generation's semi-spaces at 4 MiB (Node 24's default is 16), and the old generation
 * grown by 1.5x its live size between full collections (V8 otherwise grows it up to 4x while the
 * mutator is busy, so a warm proxy with 25 MB live sat at 100 MB of old space). Together they keep
 * about 160 MB of RSS off under warm load, at a CPU cost the benchmark could not tell from noise
 * (bench/README.md, "What was tried"). They only work on the command line
 * (v8.setFlagsFromString is too late for the heap's layout), so `npm start` and the image's
 * entrypoint pass them too, and test/cli/node-flags.test.ts keeps the three the same.
 *
 * Static imports are evaluated before this module's body, so only these, which load nothing
 * else, are static: the Node version check below must run before undici or fastify load. The
 * commands are imported dynamically, after it.
 */
import { readFileSync } from "node:fs";
import { nodeVersionProblem } from "./cli/node-version.js";
import { ConfigError } from "./errors.js";

const tooOld = nodeVersionProblem(process.versions.node, process.execPath);
if (tooOld !== undefined) {
  process.stderr.write(tooOld);
  process.exit(2);
}

const COMMANDS: Record<string, string> = {
  proxy: "the buffering proxy: holds requests while a target is cold, replays them once ready",
  sim: "a vLLM look-alike for demos, tests and benchmarks",
  help: "this help, or a command's: coldfront help proxy",
};

const USAGE = `usage: coldfront <command> [flags]

commands:
${Object.entries(COMMANDS)
  .map(([name, what]) => `  ${name.padEnd(8)}${what}`)
  .join("\n")}

flags:
  -h, --help      print this help and exit (default: off)
  -v, --version   print coldfront's version and exit (default: off)

coldfront <command> --help lists the command's flags, each with its default.`;

/** package.json's version: dist/cli.js and src/cli.ts both sit one level below it. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "proxy": {
      const { runProxyCommand } = await import("./cli/proxy-command.js");
      await runProxyCommand(rest);
      return;
    }
    case "sim": {
      const { runSimCommand } = await import("./sim/command.js");
      await runSimCommand(rest);
      return;
    }
    case "-v":
    case "--version":
      process.stdout.write(`${version()}\n`);
      return;
    case "help":
      // `coldfront help proxy` is `coldfront proxy --help`.
      if (rest[0] !== undefined && rest[0] in COMMANDS && rest[0] !== "help")
        return main([rest[0], "--help"]);
      if (rest[0] !== undefined && rest[0] !== "-h" && rest[0] !== "--help")
        throw new ConfigError(`unknown command '${rest[0]}'; coldfront --help lists them`);
      process.stdout.write(`${USAGE}\n`);
      return;
    case undefined:
    case "-h":
    case "--help":
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      if (command.startsWith("-"))
        throw new ConfigError(`unknown flag '${command}'; coldfront --help lists the commands and flags`);
      throw new ConfigError(`unknown command '${command}'; coldfront --help lists the commands`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`coldfront: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`coldfront: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
