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
    expect(c.hold).toEqual({ keepaliveAfter: 10_000, keepaliveInterval: 15_000, wakeHold: 300_000 });
    expect(c.limits.maxHeldBytes).toBe(256 * 1024 * 1024);
    expect(c.limits.requestTimeout).toBe(60_000);
    expect(c.limits.upstreamHeadersTimeout).toBeUndefined();
    expect(c.limits.edgeTimeout).toBeUndefined();
    expect(c.release.slotTimeout).toBe(500);
    expect(c.trustedProxies).toEqual([]);
    expect(c.release.concurrency).toBe(64);
    expect(c.release.initialWindow).toBe(8);
    expect(c.release.maxInFlight).toBe(1024);
    expect(c.release.retries).toBe(2);
    expect(c.targets[0]?.overloadSignals).toBe("default");
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

  test("a duration written as a bare YAML number gets the same friendly message as one without a unit", async () => {
    const { parse } = await import("yaml");
    for (const key of ["holdTimeout", "requestTimeout", "upstreamIdleTimeout"]) {
      const unquoted = errorOf({ ...minimal, ...(parse(`limits: {${key}: 10}`) as object) });
      const quoted = errorOf({ ...minimal, limits: { [key]: "10" } });
      expect(unquoted).toContain(
        `limits.${key}: expected a duration with a unit (250ms, 2s, 10m, 1h), got 10`,
      );
      expect(quoted).toContain(
        `limits.${key}: expected a duration with a unit (250ms, 2s, 10m, 1h), got "10"`,
      );
      expect(unquoted).not.toContain("expected string");
    }
    expect(errorOf({ ...minimal, hold: { keepaliveInterval: 15 } })).toContain(
      "hold.keepaliveInterval: expected a duration with a unit",
    );
    expect(errorOf({ ...minimal, limits: { maxBodyBytes: "huge" } })).toContain(
      'limits.maxBodyBytes: expected a size in bytes or with a unit (512KiB, 16MiB), got "huge"',
    );
  });

  test("the release bounds are checked at start, naming the key", () => {
    expect(errorOf({ ...minimal, release: { initialWindow: 0 } })).toContain("release.initialWindow");
    expect(errorOf({ ...minimal, release: { maxInFlight: -1 } })).toContain("release.maxInFlight");
    expect(errorOf({ ...minimal, release: { retries: 1.5 } })).toContain("release.retries");
    expect(
      errorOf({ ...minimal, targets: [{ ...minimal.targets[0], overloadSignals: [{ header: "" }] }] }),
    ).toContain("targets[0].overloadSignals");
  });

  test("durations are bounded: no 0 ms timers, nothing past setTimeout's 2^31-1 ms", () => {
    expect(errorOf({ ...minimal, hold: { keepaliveInterval: "0ms" } })).toContain(
      'hold.keepaliveInterval: must be between 100ms and 596h (the timer limit, 2^31-1 ms), got "0ms"',
    );
    expect(errorOf({ ...minimal, release: { retryBackoff: "0s" } })).toContain(
      "release.retryBackoff: must be between 10ms",
    );
    expect(errorOf({ ...minimal, limits: { holdTimeout: "600h" } })).toContain(
      'limits.holdTimeout: must be between 100ms and 596h (the timer limit, 2^31-1 ms), got "600h"',
    );
    expect(errorOf({ ...minimal, limits: { clientTimeoutMargin: "2m" } })).toContain(
      "limits.clientTimeoutMargin: must be between 0ms and 1m",
    );
    expect(errorOf({ ...minimal, release: { retryBackoff: "5s", retryBackoffMax: "1s" } })).toContain(
      "release.retryBackoffMax: retryBackoffMax must be at least retryBackoff",
    );
    expect(validateConfig({ ...minimal, limits: { holdTimeout: "596h" } }).limits.holdTimeout).toBe(
      596 * 3_600_000,
    );
  });

  test("a match.hosts entry with a port is refused: Host is matched without its port", () => {
    const withPort = (host: string) =>
      errorOf({ targets: [{ name: "a", upstream: "http://x", match: { hosts: [host] } }] });
    expect(withPort("llama.example.com:8080")).toContain(
      "targets[0].match.hosts[0]: expected a host name without a port",
    );
    expect(withPort("[::1]:8080")).toContain("targets[0].match.hosts[0]");
    const ok = validateConfig({
      targets: [{ name: "a", upstream: "http://x", match: { hosts: ["llama.example.com", "[::1]"] } }],
    });
    expect(ok.targets[0]?.match?.hosts).toEqual(["llama.example.com", "[::1]"]);
  });

  test("trustedProxies are addresses or CIDRs; auth needs a file", () => {
    expect(
      validateConfig({ ...minimal, trustedProxies: ["10.0.0.0/8", "fd00::/8", "192.168.1.1"] })
        .trustedProxies,
    ).toHaveLength(3);
    expect(errorOf({ ...minimal, trustedProxies: ["10.0.0.0/33"] })).toContain(
      "trustedProxies[0]: expected an IP address or CIDR",
    );
    expect(errorOf({ ...minimal, trustedProxies: ["proxy.internal"] })).toContain("trustedProxies[0]");
    expect(errorOf({ ...minimal, auth: { apiKeys: {} } })).toContain("auth.apiKeys.file");
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
