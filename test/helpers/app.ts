import Fastify from "fastify";
import { afterEach } from "vitest";
import { type App, type AppOptions, startApp } from "../../src/app.js";
import { validateConfig } from "../../src/config/load.js";
import type { ConfigInput } from "../../src/config/schema.js";
import type { TargetSignals } from "../../src/scaling/signals.js";
import { type Handler, Upstream } from "./upstream.js";

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

/**
 * Registers an afterEach that runs, newest first, every cleanup pushed during a test, so each
 * server a test starts is stopped by it even when an assertion fails midway.
 */
export function useCleanups(): (fn: () => Promise<unknown> | unknown) => void {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return (fn) => {
    cleanups.push(fn);
  };
}

export interface ColdTarget {
  /** Down (port closed) until `up.start()`. */
  readonly up: Upstream;
  readonly app: App;
  /** The target's live signals: pending, inFlight, ready. */
  gate(): TargetSignals;
}

/**
 * coldfront with one target "llama" whose upstream is down until the test starts it, and whose
 * probe polls fast; `extra` and `target` lay config over that.
 */
export async function startColdTarget(
  defer: (fn: () => Promise<unknown>) => void,
  options: {
    handler?: Handler;
    extra?: Partial<ConfigInput>;
    target?: Record<string, unknown>;
    /** Options of startApp (an observer, an env, a KubeConfig). */
    app?: AppOptions;
  } = {},
): Promise<ColdTarget> {
  const up = new Upstream(options.handler);
  up.port = await Upstream.reservePort();
  const app = await startTestApp(
    {
      ...options.extra,
      targets: [
        {
          name: "llama",
          upstream: up.url,
          readiness: { probe: { url: `${up.url}/health`, interval: "50ms", heldInterval: "20ms" } },
          ...options.target,
        },
      ],
    },
    options.app,
  );
  defer(async () => {
    await app.close();
    await up.stop();
  });
  return { up, app, gate: () => app.hub.get("llama") as TargetSignals };
}

/** One line of the admin port's /metrics, as a number. */
export async function metricValue(app: App, series: string): Promise<number> {
  const text = await (await fetch(`${app.adminUrl}/metrics`)).text();
  const found = text.split("\n").find((l) => l.startsWith(`${series} `));
  if (!found) throw new Error(`metric ${series} not found`);
  return Number(found.slice(series.length).trim());
}

/** The OpenAI-shaped error body coldfront answers with. */
export interface ErrorBody {
  error: { message: string; type: string; param: null; code: string };
}

export async function errorBody(res: Response): Promise<ErrorBody> {
  return (await res.json()) as ErrorBody;
}

/** POST /v1/completions with `{id, ...extra}`: the release tests tell requests apart by id. */
export const postCompletion = (url: string, id: string, extra: Record<string, unknown> = {}) =>
  fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id, ...extra }),
  });

/** The id a request body (or an echoed answer) carries. */
export const idOf = (body: string): string => (JSON.parse(body) as { id: string }).id;
