/**
 * README's `npm start` demo config (examples/local.yaml) moved to free ports with a shorter
 * simulated load, for the tests that run the demo end to end.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { ROOT } from "./cli.js";
import { Upstream } from "./upstream.js";

export interface LocalConfig {
  listen: string;
  admin: string;
  targets: {
    name: string;
    upstream: string;
    match: { models: string[] };
    readiness: { process: { command: string[]; url: string; idleTimeout: string } };
  }[];
}

export interface LocalDemo {
  readonly file: string;
  readonly config: LocalConfig;
  /** The client, admin and simulator ports. */
  readonly ports: readonly [number, number, number];
  readonly client: string;
  readonly admin: string;
  readonly model: string;
}

export async function localDemoConfig(o: { startupDelay: string; idleTimeout?: string }): Promise<LocalDemo> {
  const config = parse(readFileSync(join(ROOT, "examples/local.yaml"), "utf8")) as LocalConfig;
  const ports = [
    await Upstream.reservePort(),
    await Upstream.reservePort(),
    await Upstream.reservePort(),
  ] as const;
  const [listen, admin, sim] = ports;
  config.listen = `127.0.0.1:${listen}`;
  config.admin = `127.0.0.1:${admin}`;
  const target = config.targets[0];
  if (!target) throw new Error("examples/local.yaml has no target");
  const oldPort = new URL(target.upstream).port;
  target.upstream = target.upstream.replace(oldPort, String(sim));
  const p = target.readiness.process;
  p.url = p.url.replace(oldPort, String(sim));
  p.command = p.command.map((word) => (word === oldPort ? String(sim) : word));
  const delay = p.command.indexOf("--startup-delay");
  if (delay < 0) throw new Error("examples/local.yaml's command has no --startup-delay");
  p.command[delay + 1] = o.startupDelay;
  if (o.idleTimeout !== undefined) p.idleTimeout = o.idleTimeout;
  const file = join(mkdtempSync(join(tmpdir(), "coldfront-demo-")), "local.yaml");
  writeFileSync(file, stringify(config));
  return {
    file,
    config,
    ports,
    client: `http://127.0.0.1:${listen}`,
    admin: `http://127.0.0.1:${admin}`,
    model: target.match.models[0] as string,
  };
}
