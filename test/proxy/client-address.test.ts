/** README "Who may wake a model": X-Forwarded-For is believed only from trustedProxies. */
import { describe, expect, test } from "vitest";
import { trustedProxyList } from "../../src/config/schema.js";
import { clientAddress, normalizeAddress, peerTrusted } from "../../src/proxy/client-address.js";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

describe("clientAddress", () => {
  const trusted = trustedProxyList(["10.0.0.0/8", "fd00::/8"]);

  test("an untrusted peer is the client, whatever X-Forwarded-For says", () => {
    expect(clientAddress("203.0.113.9", "1.2.3.4", trusted)).toBe("203.0.113.9");
    expect(clientAddress("203.0.113.9", undefined, undefined)).toBe("203.0.113.9");
    expect(peerTrusted(trusted, "203.0.113.9")).toBe(false);
  });

  test("from a trusted peer, the rightmost untrusted hop", () => {
    expect(clientAddress("10.1.1.1", "198.51.100.7", trusted)).toBe("198.51.100.7");
    expect(clientAddress("10.1.1.1", "6.6.6.6, 198.51.100.7, 10.2.2.2", trusted)).toBe("198.51.100.7");
    expect(clientAddress("10.1.1.1", ["6.6.6.6", "198.51.100.7"], trusted)).toBe("198.51.100.7");
    expect(clientAddress("fd00::1", "2001:db8::5", trusted)).toBe("2001:db8::5");
    // Every hop trusted: the leftmost is as far as anyone vouches.
    expect(clientAddress("10.1.1.1", "10.3.3.3, 10.2.2.2", trusted)).toBe("10.3.3.3");
    // Garbage in the chain stops the walk at the last hop a trusted proxy vouched for.
    expect(clientAddress("10.1.1.1", "not-an-ip", trusted)).toBe("10.1.1.1");
  });

  test("IPv4-mapped IPv6 peers match IPv4 CIDRs", () => {
    expect(normalizeAddress("::ffff:10.1.1.1")).toBe("10.1.1.1");
    expect(peerTrusted(trusted, "::ffff:10.1.1.1")).toBe(true);
    expect(clientAddress("::ffff:10.1.1.1", "198.51.100.7", trusted)).toBe("198.51.100.7");
  });
});

describe("the per-client share behind a trusted proxy", () => {
  const post = (url: string, xff: string) =>
    fetch(`${url}/v1/completions`, { method: "POST", body: "{}", headers: { "x-forwarded-for": xff } });

  test("clients behind a trusted ingress get a share each; behind an untrusted one they share its address", async () => {
    const trusted = await startColdTarget(defer, {
      extra: { limits: { maxPending: 4, maxClientShare: 0.25 }, trustedProxies: ["127.0.0.1"] },
    });
    const held = [post(trusted.app.clientUrl, "198.51.100.1"), post(trusted.app.clientUrl, "198.51.100.2")];
    await waitFor(() => trusted.gate().pending === 2, "one held per client");
    expect((await post(trusted.app.clientUrl, "198.51.100.1")).status).toBe(429);

    const untrusted = await startColdTarget(defer, {
      extra: { limits: { maxPending: 4, maxClientShare: 0.25 } },
    });
    const one = post(untrusted.app.clientUrl, "198.51.100.1");
    await waitFor(() => untrusted.gate().pending === 1, "held");
    expect((await post(untrusted.app.clientUrl, "198.51.100.2")).status).toBe(429);

    await trusted.up.start();
    await untrusted.up.start();
    for (const r of await Promise.all([...held, one])) expect(r.status).toBe(200);
    // From the trusted proxy the chain is extended; from anyone else it is replaced by the peer.
    expect(trusted.up.seen[0]?.headers["x-forwarded-for"]).toMatch(/^198\.51\.100\.[12], 127\.0\.0\.1$/);
    expect(untrusted.up.seen[0]?.headers["x-forwarded-for"]).toBe("127.0.0.1");
  });
});
