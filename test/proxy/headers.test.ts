import { describe, expect, test } from "vitest";
import { clientResponseHeaders, upstreamRequestHeaders } from "../../src/proxy/headers.js";

function toMap(flat: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    out[name] = [...(out[name] ?? []), flat[i + 1] as string];
  }
  return out;
}

describe("upstream request headers", () => {
  test("drops hop-by-hop and Connection-listed fields, keeps Authorization", () => {
    const h = toMap(
      upstreamRequestHeaders(
        [
          "Host",
          "coldfront:8080",
          "Connection",
          "keep-alive, X-Secret-Hop",
          "Keep-Alive",
          "timeout=5",
          "X-Secret-Hop",
          "1",
          "Transfer-Encoding",
          "chunked",
          "TE",
          "trailers",
          "Upgrade",
          "h2c",
          "Content-Length",
          "12",
          "Authorization",
          "Bearer sk-test",
          "Content-Type",
          "application/json",
        ],
        {
          remoteAddress: "10.0.0.7",
          trustedPeer: false,
          identity: false,
          proto: "http",
          host: "coldfront:8080",
        },
      ),
    );
    for (const gone of [
      "host",
      "connection",
      "keep-alive",
      "x-secret-hop",
      "transfer-encoding",
      "te",
      "upgrade",
      "content-length",
    ]) {
      expect(h[gone], gone).toBeUndefined();
    }
    expect(h.authorization).toEqual(["Bearer sk-test"]);
    expect(h["content-type"]).toEqual(["application/json"]);
    expect(h["x-forwarded-for"]).toEqual(["10.0.0.7"]);
    expect(h["x-forwarded-proto"]).toEqual(["http"]);
    expect(h["x-forwarded-host"]).toEqual(["coldfront:8080"]);
  });

  test("appends to the X-Forwarded-For chain of a trusted proxy", () => {
    const h = toMap(
      upstreamRequestHeaders(["X-Forwarded-For", "1.1.1.1, 2.2.2.2"], {
        remoteAddress: "3.3.3.3",
        trustedPeer: true,
        identity: false,
        proto: "http",
        host: undefined,
      }),
    );
    expect(h["x-forwarded-for"]).toEqual(["1.1.1.1, 2.2.2.2, 3.3.3.3"]);
    expect(h["x-forwarded-host"]).toBeUndefined();
  });
});

describe("what a client cannot smuggle upstream", () => {
  const facts = {
    remoteAddress: "203.0.113.9",
    trustedPeer: false,
    identity: false,
    proto: "http" as const,
    host: "cf",
  };

  test("every Connection line counts, not only the last", () => {
    const h = toMap(
      upstreamRequestHeaders(
        ["Connection", "x-secret", "Connection", "keep-alive", "X-Secret", "s3cret", "X-Other", "ok"],
        facts,
      ),
    );
    expect(h["x-secret"]).toBeUndefined();
    expect(h["x-other"]).toEqual(["ok"]);
  });

  test("a client's Forwarded and X-Forwarded-* are dropped unless the peer is a trusted proxy", () => {
    const raw = [
      "Forwarded",
      "for=10.0.0.1;host=admin.internal",
      "X-Forwarded-For",
      "10.0.0.1",
      "X-Forwarded-Host",
      "admin.internal",
      "X-Forwarded-Proto",
      "https",
      "X-Forwarded-Prefix",
      "/admin",
    ];
    const h = toMap(upstreamRequestHeaders(raw, facts));
    expect(h.forwarded).toBeUndefined();
    expect(h["x-forwarded-prefix"]).toBeUndefined();
    expect(h["x-forwarded-for"]).toEqual(["203.0.113.9"]);
    expect(h["x-forwarded-host"]).toEqual(["cf"]);
    expect(h["x-forwarded-proto"]).toEqual(["http"]);

    const t = toMap(upstreamRequestHeaders(raw, { ...facts, trustedPeer: true }));
    expect(t.forwarded).toBeUndefined();
    expect(t["x-forwarded-for"]).toEqual(["10.0.0.1, 203.0.113.9"]);
    expect(t["x-forwarded-host"]).toEqual(["admin.internal"]);
    expect(t["x-forwarded-proto"]).toEqual(["https"]);
    expect(t["x-forwarded-prefix"]).toEqual(["/admin"]);
  });

  test("identity: the upstream is asked for an uncompressed answer", () => {
    const h = toMap(upstreamRequestHeaders(["Accept-Encoding", "gzip, br"], { ...facts, identity: true }));
    expect(h["accept-encoding"]).toEqual(["identity"]);
    const plain = toMap(upstreamRequestHeaders(["Accept-Encoding", "gzip, br"], facts));
    expect(plain["accept-encoding"]).toEqual(["gzip, br"]);
  });
});

describe("client response headers", () => {
  test("drops hop-by-hop fields and keeps the rest", () => {
    const out = clientResponseHeaders({
      connection: "close, x-hop",
      "x-hop": "1",
      "transfer-encoding": "chunked",
      "keep-alive": "timeout=5",
      "content-type": "text/event-stream",
      "set-cookie": ["a=1", "b=2"],
    });
    expect(out).toEqual({ "content-type": "text/event-stream", "set-cookie": ["a=1", "b=2"] });
  });
});
