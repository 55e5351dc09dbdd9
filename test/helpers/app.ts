import Fastify from "fastify";
import { type App, type AppOptions, startApp } from "../../src/app.js";
import { validateConfig } from "../../src/config/load.js";
import type { ConfigInput } from "../../src/config/schema.js";

/** A silent logger; set COLDFRONT_TEST_LOG=debug to see what the app logs. */
export function testLogger() {
  return Fastify({ logger: { level: process.env.COLDFRONT_TEST_LOG ?? "silent" } }).log;
}

/** Starts coldfront on ephemeral 127.0.0.1 ports; the caller must close() it. */
export async function startTestApp(
  config: Partial<ConfigInput> & Pick<ConfigInput, "targets">,
  options: AppOptions = {},
): Promise<App> {
  return startApp(validateConfig({ listen: "127.0.0.1:0", admin: "127.0.0.1:0", ...config }), {
    logger: testLogger(),
    ...options,
  });
}

/** Polls a condition every 10 ms until it holds or `ms` passes (then throws with `what`). */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  ms = 5000,
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
