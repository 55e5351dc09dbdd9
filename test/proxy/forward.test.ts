import { createHash } from "node:crypto";
import { request } from "node:http";
import { describe, expect, test } from "vitest";
import { startTestApp, useCleanups, waitFor } from "../helpers/app.js";
import { Upstream } from "../helpers/upstream.js";

const defer = useCleanups();

const CHUNK = Buffer.alloc(64 * 1024, "x");
const TOTAL_CHUNKS = 1024; // 64 MiB: far more than the socket buffers on the way can hide

describe("forwarding a large body", () => {
  test("a client that does not read pauses the upstream; once it reads, every byte arrives intact", async () => {
    let written = 0;
    let blockedSince: number | undefined;
    const hash = createHash("sha256");
    const up = await new Upstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const pump = () => {
        while (written < TOTAL_CHUNKS) {
          const chunk = Buffer.from(CHUNK);
          chunk.writeUInt32BE(written, 0);
          hash.update(chunk);
          written++;
          if (!res.write(chunk)) {
            blockedSince = Date.now();
            res.once("drain", () => {
              blockedSince = undefined;
              pump();
            });
            return;
          }
        }
        res.end();
      };
      pump();
    }).start();
    defer(() => up.stop());
    const app = await startTestApp({ targets: [{ name: "blob", upstream: up.url }] });
    defer(() => app.close());

    const { hostname: host, port } = new URL(app.clientUrl);
    const res = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      const req = request({ host, port, method: "POST", path: "/blob" }, resolve);
      req.on("error", reject);
      req.end("{}");
    });
    res.pause();
    defer(() => res.destroy());
    // Without backpressure coldfront would read the whole body into memory and the upstream would
    // never stay blocked: it would finish.
    await waitFor(
      () => blockedSince !== undefined && Date.now() - blockedSince > 500,
      "the upstream blocked by a client that does not read",
      15_000,
    );
    expect(written).toBeLessThan(TOTAL_CHUNKS);
    expect(app.hub.get("blob")?.inFlight).toBe(1);

    const got = createHash("sha256");
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      res.on("data", (c: Buffer) => {
        got.update(c);
        bytes += c.length;
      });
      res.on("end", resolve);
      res.on("error", reject);
      res.resume();
    });
    expect(bytes).toBe(TOTAL_CHUNKS * CHUNK.length);
    expect(got.digest("hex")).toBe(hash.digest("hex"));
    await waitFor(() => app.hub.get("blob")?.inFlight === 0, "in-flight back to 0");
  }, 60_000);
});
