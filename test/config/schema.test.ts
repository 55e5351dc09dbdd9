import { describe, expect, test } from "vitest";
import { validateConfig } from "../../src/config/load.js";
import { parseDuration, parseSize } from "../../src/config/units.js";
import { ConfigError } from "../../src/errors.js";

const minimal = { targets: [{ name: "llama", upstream: "http://gw:80" }] };

function errorOf(raw: unknown): string {
  try {
    validateConfig(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("expected the config to be rejected");
}

describe("units", () => {
  test("durations need a unit", () => {
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("2s")).toBe(2000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("10m")).toBe(600_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("10")).toBeUndefined();
    expect(parseDuration("ten minutes")).toBeUndefined();
  });

  test("sizes are bytes or carry a unit", () => {
    expect(parseSize(1024)).toBe(1024);
    expect(parseSize("512KiB")).toBe(512 * 1024);
    expect(parseSize("16MiB")).toBe(16 * 1024 * 1024);
    expect(parseSize("1MB")).toBe(1_000_000);
    expect(parseSize("12parsecs")).toBeUndefined();
    expect(parseSize(-1)).toBeUndefined();
  });
});

describe("config schema", () => {
  test("fills DESIGN.md defaults", () => {
    const c = validateConfig(minimal);
    expect(c.listen).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(c.admin).toEqual({ host: "0.0.0.0", port: 9090 });
    expect(c.limits.holdTimeout).toBe(600_000);
    expect(c.limits.maxPending).toBe(1000);
    expect(c.limits.maxBodyBytes).toBe(16 * 1024 * 1024);
    expect(c.hold).toEqual({ keepaliveAfter: 10_000, keepaliveInterval: 15_000 });
    expect(c.release.concurrency).toBe(64);
    expect(c.shutdown.gracePeriod).toBe(30_000);
    expect(c.targets[0]?.wakeMethods).toEqual(["POST"]);
    expect(c.targets[0]?.coldSignals).toBe("default");
  });

  test("parses the DESIGN.md example's units", () => {
    const c = validateConfig({
      ...minimal,
      listen: "127.0.0.1:0",
      limits: { holdTimeout: "10m", maxPending: 5, maxBodyBytes: "512KiB", upstreamIdleTimeout: "5m" },
      hold: { keepaliveAfter: "10s", keepaliveInterval: "15s" },
    });
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 0 });
    expect(c.limits.maxBodyBytes).toBe(524_288);
    expect(c.limits.upstreamIdleTimeout).toBe(300_000);
  });

  test("a bad duration names its key path", () => {
    const msg = errorOf({ ...minimal, limits: { holdTimeout: "10" } });
    expect(msg).toContain("limits.holdTimeout");
    expect(msg).toContain("duration");
  });

  test("a bad nested key names its index", () => {
    const msg = errorOf({
      targets: [
        { name: "a", upstream: "http://x" },
        { name: "b", upstream: "ftp://x" },
      ],
    });
    expect(msg).toContain("targets[1].upstream");
  });

  test("unknown keys are refused, with their path", () => {
    const msg = errorOf({ ...minimal, limits: { holdTimeOut: "1m" } });
    expect(msg).toContain("limits");
    expect(msg).toContain('"holdTimeOut"');
  });

  test("duplicate target names, two readiness sources, empty targets", () => {
    expect(errorOf({ targets: [minimal.targets[0], minimal.targets[0]] })).toContain("targets[1].name");
    expect(
      errorOf({
        targets: [
          {
            name: "a",
            upstream: "http://x",
            readiness: { probe: { url: "http://x/h" }, kubernetes: { namespace: "n", service: "s" } },
          },
        ],
      }),
    ).toContain("targets[0].readiness");
    expect(errorOf({ targets: [] })).toContain("targets");
  });

  test("bad listen address and bad cold signal", () => {
    expect(errorOf({ ...minimal, listen: "8080" })).toContain("listen");
    expect(errorOf({ targets: [{ ...minimal.targets[0], coldSignals: [{}] }] })).toContain(
      "targets[0].coldSignals[0]",
    );
  });
});
