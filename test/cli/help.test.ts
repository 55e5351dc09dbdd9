/**
 * The built executable as a new user tries it: `--version` and `-v`, `--help` and `-h` for
 * coldfront and for each command (every flag listed with a meaning and a default, exit 0), and
 * unknown flags (exit 2, naming the flag and pointing at `--help`).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { ensureBuilt, ROOT, type Running, runCli } from "../helpers/cli.js";

const running: Running[] = [];
beforeAll(() => ensureBuilt());
afterEach(async () => {
  for (const r of running.splice(0)) await r.kill();
});

/** Runs the CLI to its exit: code, stdout and stderr. */
async function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const r = runCli(args);
  running.push(r);
  const { code } = await r.exited;
  return { code, out: r.lines.join("\n"), err: r.stderr() };
}

/** The flag lines of a help text: `--name` to the rest of its line. */
function flagLines(help: string): Map<string, string> {
  const lines = new Map<string, string>();
  for (const m of help.matchAll(/^ {2}(?:-\w, )? *--([\w-]+)(.*)$/gm)) lines.set(m[1]!, m[2]!);
  return lines;
}

const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };

const FLAGS = {
  proxy: ["config", "upstream", "probe-url", "listen", "admin", "log-level", "help"],
  sim: [
    "port",
    "host",
    "model",
    "startup-delay",
    "startup-mode",
    "ttft",
    "itl",
    "max-num-seqs",
    "max-tokens",
    "max-model-len",
    "output",
    "seed",
    "log-level",
    "help",
  ],
} as const;

describe("coldfront --version", () => {
  test.each([["--version"], ["-v"]])("%s prints package.json's version and exits 0", async (flag) => {
    const r = await cli([flag]);
    expect(r).toEqual({ code: 0, out: version, err: "" });
  });
});

describe("coldfront --help", () => {
  test.each([[["--help"]], [["-h"]], [["help"]], [["help", "--help"]], [["help", "-h"]], [[]]])(
    "%j lists the commands and flags, exit 0",
    async (args) => {
      const r = await cli(args);
      expect(r.code).toBe(0);
      expect(r.err).toBe("");
      for (const command of ["proxy", "sim", "help"])
        expect(r.out).toMatch(new RegExp(`^ {2}${command} +\\S`, "m"));
      expect([...flagLines(r.out).keys()]).toEqual(["help", "version"]);
      expect(r.out).toContain("-v, --version");
    },
  );
});

describe.each(Object.entries(FLAGS))("coldfront %s", (command, flags) => {
  test.each([["--help"], ["-h"]])(
    `${command} %s lists every flag with its meaning and default, exit 0`,
    async (flag) => {
      const r = await cli([command, flag]);
      expect(r.code).toBe(0);
      expect(r.err).toBe("");
      expect(r.out).toMatch(new RegExp(`^usage: coldfront ${command}`));
      const lines = flagLines(r.out);
      expect([...lines.keys()]).toEqual(flags);
      for (const [name, rest] of lines) {
        // A value placeholder or none, then the meaning, then "(default: ...)".
        expect(rest, name).toMatch(/^( [A-Z]+)? {2,}\S.* \(default: [^)]+\)$/);
      }
      // `coldfront help <command>` is the same text.
      expect((await cli(["help", command])).out).toBe(r.out);
    },
  );

  test(`${command} with an unknown flag exits 2, naming it and pointing at --help`, async () => {
    const r = await cli([command, "--frobnicate", "1"]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain("'--frobnicate'");
    expect(r.err).toContain(`coldfront ${command} --help`);
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });

  test(`${command} with a flag missing its value exits 2, naming it`, async () => {
    const valued = command === "proxy" ? "--config" : "--port";
    const r = await cli([command, valued]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${valued} needs a value`);
    expect(r.err).toContain(`coldfront ${command} --help`);
  });
});

describe("coldfront with an unknown flag or command", () => {
  test.each([
    [["--frobnicate"], "'--frobnicate'"],
    [["frobnicate"], "'frobnicate'"],
    [["help", "frobnicate"], "'frobnicate'"],
  ])("%j exits 2 naming %s and pointing at --help", async (args, named) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.err).toContain(named);
    expect(r.err).toContain("coldfront --help");
  });
});
