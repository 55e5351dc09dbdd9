/** A port already in use is a one-line error naming the config key, and exit code 2 (README "Running it"). */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { useCleanups } from "../helpers/app.js";
import { ensureBuilt, runCli } from "../helpers/cli.js";

const defer = useCleanups();
ensureBuilt();

async function occupied(): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  defer(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return (s.address() as { port: number }).port;
}

async function configWith(lines: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "coldfront-listen-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "c.yaml");
  await writeFile(file, `${lines}\ntargets: [{name: a, upstream: "http://127.0.0.1:9"}]\n`);
  return file;
}

describe("a port already in use", () => {
  for (const key of ["listen", "admin", "scaler.listen"] as const) {
    test(`${key}: one line naming the key and the address, exit code 2`, async () => {
      const port = await occupied();
      const listen = key === "listen" ? port : 0;
      const admin = key === "admin" ? port : 0;
      const scaler = key === "scaler.listen" ? `scaler: {listen: "127.0.0.1:${port}"}` : "";
      const file = await configWith(
        `listen: "127.0.0.1:${listen}"\nadmin: "127.0.0.1:${admin}"\nlog: {level: silent}\n${scaler}`,
      );
      const run = runCli(["proxy", "--config", file]);
      defer(() => run.kill());
      const { code } = await run.exited;
      expect(code).toBe(2);
      const err = run.stderr().trim();
      expect(err.split("\n")).toHaveLength(1);
      expect(err).toBe(
        `coldfront: ${key}: 127.0.0.1:${port} is already in use (another coldfront still running?)`,
      );
    });
  }
});
