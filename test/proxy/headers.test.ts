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
        { remoteAddress: "10.0.0.7", proto: "http", host: "coldfront:8080" },
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

  test("appends to an existing X-Forwarded-For chain", () => {
    const h = toMap(
      upstreamRequestHeaders(["X-Forwarded-For", "1.1.1.1, 2.2.2.2"], {
        remoteAddress: "3.3.3.3",
        proto: "http",
        host: undefined,
      }),
    );
    expect(h["x-forwarded-for"]).toEqual(["1.1.1.1, 2.2.2.2, 3.3.3.3"]);
    expect(h["x-forwarded-host"]).toBeUndefined();
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
