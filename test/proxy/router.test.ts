import { describe, expect, test } from "vitest";
import { validateConfig } from "../../src/config/load.js";
import { ColdfrontError } from "../../src/errors.js";
import { Router } from "../../src/proxy/router.js";

function router(targets: unknown[]) {
  const config = validateConfig({ targets });
  return new Router(config.targets.map((c) => ({ config: c, target: c.name })));
}

function facts(url: string, opts: { host?: string; body?: unknown } = {}) {
  const raw =
    opts.body === undefined
      ? undefined
      : typeof opts.body === "string"
        ? opts.body
        : JSON.stringify(opts.body);
  return {
    host: opts.host,
    url,
    hasBody: raw !== undefined,
    json: () => {
      try {
        return raw === undefined ? undefined : JSON.parse(raw);
      } catch {
        return undefined;
      }
    },
  };
}

describe("Router", () => {
  const r = router([
    { name: "llama", upstream: "http://a", match: { models: ["llama-8b", "llama-70b"] } },
    {
      name: "by-host",
      upstream: "http://b",
      match: { hosts: ["mistral.example.com"], pathPrefixes: ["/v1/"] },
    },
    { name: "rest", upstream: "http://c" },
  ]);

  test("models: any listed value fits", () => {
    expect(r.route(facts("/v1/chat/completions", { body: { model: "llama-70b" } }))).toBe("llama");
  });

  test("across keys all given keys must fit; host ignores the port and case", () => {
    expect(
      r.route(facts("/v1/chat/completions", { host: "Mistral.example.com:8080", body: { model: "m" } })),
    ).toBe("by-host");
    expect(r.route(facts("/health", { host: "mistral.example.com" }))).toBe("rest");
  });

  test("a target without match takes everything", () => {
    expect(r.route(facts("/anything"))).toBe("rest");
  });

  test("a body that is not JSON where a models rule needs it is invalid_request", () => {
    const e = r.route(facts("/v1/completions", { body: "not json" }));
    expect(e).toBeInstanceOf(ColdfrontError);
    expect((e as ColdfrontError).type).toBe("invalid_request");
    expect((e as ColdfrontError).status).toBe(400);
  });

  test("no matching target is no_route", () => {
    const only = router([{ name: "llama", upstream: "http://a", match: { models: ["llama-8b"] } }]);
    const e = only.route(facts("/v1/completions", { body: { model: "gpt-4" } }));
    expect((e as ColdfrontError).type).toBe("no_route");
    expect((e as ColdfrontError).status).toBe(404);
    expect(only.models).toEqual(["llama-8b"]);
  });
});
