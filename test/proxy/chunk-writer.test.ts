/**
 * Streamed bodies framed by coldfront itself and written to the client's socket
 * (src/proxy/chunk-writer.ts), read back byte for byte by a strict raw client: every response must
 * parse as complete HTTP/1.1, in order, on connections kept alive, and fall back to Node's own
 * writes where framing by hand would be wrong (HTTP/1.0, a pipelined response queued behind
 * another).
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { chunkSocket, writeChunk } from "../../src/proxy/chunk-writer.js";
import { startTestApp } from "../helpers/app.js";
import { parseResponses, RawConversations } from "../helpers/raw-http.js";
import { Upstream } from "../helpers/upstream.js";

const TALK = { fin: false, quietMs: 300, maxMs: 10_000 };

function post(body: object, version = "1.1"): string {
  const json = JSON.stringify(body);
  return `POST /chat/v1/chat/completions HTTP/${version}\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`;
}

/** What echoHandler streams for `n` events of `id`. */
function expected(id: string, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += `data: ${JSON.stringify({ i, id })}\n\n`;
  return `${s}data: [DONE]\n\n`;
}

describe("chunked bodies written to the socket", () => {
  let up: Upstream;
  let app: App;
  let raw: RawConversations;

  beforeAll(async () => {
    up = await new Upstream().start();
    app = await startTestApp({ targets: [{ name: "chat", upstream: up.url }] });
    raw = new RawConversations(app.clientUrl);
  });
  afterAll(async () => {
    raw.closeAll();
    await app.close();
    await up.stop();
  });

  it("a paced stream arrives as one chunk per event, whole, and the connection stays usable", async () => {
    const c = await raw.talk(
      Buffer.from(post({ stream: true, n: 5, gapMs: 30, id: "a" }) + post({ stream: false, id: "after" })),
      TALK,
    );
    expect(c.parsed.error).toBeUndefined();
    expect(c.parsed.rest.length).toBe(0);
    const [stream, json] = c.parsed.responses;
    expect(stream?.status).toBe(200);
    expect(stream?.headers.get("transfer-encoding")).toEqual(["chunked"]);
    expect(stream?.body.toString()).toBe(expected("a", 5));
    // Each event was its own chunk on the wire (no buffering into one), then the last chunk.
    const sizes = c.received.toString("latin1").match(/\r\n[0-9a-f]+\r\ndata: /g) ?? [];
    expect(sizes.length).toBeGreaterThanOrEqual(5);
    expect(JSON.parse(json?.body.toString() ?? "{}").id).toBe("after");
    expect(c.ending).toBe("quiet");
  });

  it("pipelined streams come back whole and in order, the second queued behind the first", async () => {
    const c = await raw.talk(
      Buffer.from(
        post({ stream: true, n: 4, gapMs: 40, id: "slow" }) +
          post({ stream: true, n: 6, gapMs: 0, id: "fast" }),
      ),
      TALK,
    );
    expect(c.parsed.error).toBeUndefined();
    expect(c.parsed.responses.map((r) => r.body.toString())).toEqual([
      expected("slow", 4),
      expected("fast", 6),
    ]);
  });

  it("an HTTP/1.0 client gets the stream unframed, ended by the close", async () => {
    const c = await raw.talk(Buffer.from(post({ stream: true, n: 3, gapMs: 10, id: "old" }, "1.0")), TALK);
    expect(c.ending).toBe("closed");
    expect(c.parsed.error).toBeUndefined();
    const [r] = c.parsed.responses;
    expect(r?.headers.get("transfer-encoding")).toBeUndefined();
    expect(r?.body.toString()).toBe(expected("old", 3));
  });
});

describe("writeChunk", () => {
  it("frames as RFC 9112 §7.1 (hex size, CRLF, data, CRLF) and skips empty chunks", async () => {
    const { createServer } = await import("node:http");
    const server = createServer((req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      const socket = chunkSocket(res);
      expect(socket).toBeDefined();
      if (socket === undefined) return;
      writeChunk(socket, Buffer.from("hello"));
      writeChunk(socket, Buffer.alloc(0));
      writeChunk(socket, Buffer.alloc(300, "z"));
      res.end();
      req.resume();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as import("node:net").AddressInfo).port;
      const bytes = await new Promise<Buffer>((resolve, reject) => {
        const s = connect(port, "127.0.0.1", () =>
          s.end("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        const got: Buffer[] = [];
        s.on("data", (d: Buffer) => got.push(d));
        s.on("end", () => resolve(Buffer.concat(got)));
        s.on("error", reject);
      });
      const text = bytes.toString("latin1");
      expect(text.slice(text.indexOf("\r\n\r\n") + 4)).toBe(
        `5\r\nhello\r\n12c\r\n${"z".repeat(300)}\r\n0\r\n\r\n`,
      );
      const parsed = parseResponses(bytes, true);
      expect(parsed.responses[0]?.body.length).toBe(305);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
