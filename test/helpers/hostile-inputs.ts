/**
 * Generators of malformed and hostile HTTP/1.1 requests for the hostile-input suite (README
 * "Bounds"; DESIGN.md "Bounds, identity and long cold starts"), built with fast-check so that a
 * seed replays a run exactly.
 *
 * Every input is meant to be refused, answered without holding, or cut. Inputs that would be a
 * legitimate held request are never generated on purpose: where a body names the routed model,
 * something in the input must make it unholdable by the rules (a request target that is not
 * origin-form, a framing conflict, a body cut short, invalid JSON, a method that does not wake,
 * headers over Node's 16 KiB limit). The suite then checks that none of them was held and none
 * reached the upstream, which is what those rules promise.
 *
 * Bytes are built as latin1 strings, one char per byte, so that control and high bytes go out as
 * they are.
 */
import { gzipSync } from "node:zlib";
import fc from "fast-check";

export type Family =
  | "bad-json"
  | "big-headers"
  | "dup-content-length"
  | "cl-te-conflict"
  | "bad-chunked"
  | "control-bytes"
  | "absurd-content-length"
  | "http-1.0"
  | "pipelined-garbage"
  | "request-target"
  | "upgrade-h2c"
  | "bad-method"
  | "host"
  | "obs-fold"
  | "no-version"
  | "bare-lf"
  | "cut-short"
  | "expect"
  | "non-wake-method"
  | "noise"
  | "mutated";

/**
 * How the client ends its side: `sentinel` appends a well-formed `Connection: close` request, so
 * that a server which parsed everything answers it and closes at once; `fin` half-closes (a
 * client with nothing more to send); `silent` neither, so only coldfront's own timeouts end it.
 */
export type Ending = "sentinel" | "fin" | "sentinel+fin" | "silent";

export interface HostileCase {
  readonly family: Family;
  /** The bytes to send, sentinel included. */
  readonly bytes: Buffer;
  /** Half-close after writing. */
  readonly fin: boolean;
  readonly ending: Ending;
}

export interface HostileOptions {
  /** The model that routes to the cold target: a valid POST naming it would be held. */
  readonly model: string;
  readonly maxBodyBytes: number;
  /** With auth on: keys that verify, so that inputs get past the key check to the rules behind it. */
  readonly validKeys?: readonly string[];
}

const CRLF = "\r\n";
const SENTINEL = `GET /__end HTTP/1.1${CRLF}Host: end.test${CRLF}Connection: close${CRLF}${CRLF}`;

const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("latin1");
const utf8 = (text: string): string => Buffer.from(text, "utf8").toString("latin1");

/** What coldfront's router would take as a request for `model` (Exchange#json, Router#route). */
export function namesModel(body: string, model: string): boolean {
  try {
    const json: unknown = JSON.parse(Buffer.from(body, "latin1").toString("utf8"));
    return typeof json === "object" && json !== null && (json as { model?: unknown }).model === model;
  } catch {
    return false;
  }
}

function request(line: string, headers: readonly string[], body = ""): string {
  return `${line}${CRLF}${headers.map((h) => `${h}${CRLF}`).join("")}${CRLF}${body}`;
}

function chunked(body: string, pieces: number): string {
  const size = Math.max(1, Math.ceil(body.length / Math.max(1, pieces)));
  let out = "";
  for (let at = 0; at < body.length; at += size) {
    const part = body.slice(at, at + size);
    out += `${part.length.toString(16)}${CRLF}${part}${CRLF}`;
  }
  return `${out}0${CRLF}${CRLF}`;
}

/** A request body with weight `w`. */
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });

export function hostileCases(o: HostileOptions): fc.Arbitrary<HostileCase> {
  const model = o.model;
  const routed = JSON.stringify({ model, messages: [{ role: "user", content: "must never be held" }] });
  const routedStream = JSON.stringify({ model, stream: true, messages: [{ role: "user", content: "x" }] });
  const routedBody = fc.constantFrom(routed, routedStream);
  // Models that do not route: near misses of the routed name, plus names far from it (the
  // "mutated" family uses only far ones, so that no random edit can turn one into the real name).
  const farModels = ["ghost", "gpt-4o", "mistral-7b-instruct"];
  const nearModels = [model.toUpperCase(), `${model} `, ` ${model}`, `${model}\u0000`, `${model}-x`, ""];
  const ghostOf = (models: readonly string[]) =>
    fc
      .record({
        model: fc.constantFrom(...models),
        stream: fc.boolean(),
        content: fc.string({ maxLength: 40 }),
      })
      .map(({ model: m, stream, content }) =>
        utf8(JSON.stringify({ model: m, stream, messages: [{ role: "user", content }] })),
      );
  const ghost = ghostOf([...farModels, ...nearModels]);
  const farGhost = ghostOf(farModels);

  const host = "Host: coldfront.test";
  // With auth on, mostly a valid key so that the input meets the rules behind the key check;
  // without, a key header buys nothing, and is noise.
  const keyLines: fc.Arbitrary<string[]> =
    o.validKeys !== undefined && o.validKeys.length > 0
      ? fc.oneof(
          w(
            8,
            fc.constantFrom(...o.validKeys).map((k) => [`Authorization: Bearer ${k}`]),
          ),
          w(1, fc.constant<string[]>([])),
          w(
            1,
            fc
              .constantFrom(
                "Authorization: Bearer wrong",
                "x-api-key: wrong",
                "Authorization: Basic Zm9vOmJhcg==",
              )
              .map((h): string[] => [h]),
          ),
        )
      : fc.oneof(
          fc.constant<string[]>([]),
          fc.constantFrom("Authorization: Bearer k-rotated-1", "api-key: k2").map((h): string[] => [h]),
        );
  const path = fc.constantFrom(
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/",
    "/admin/secret",
    "/v1/chat/completions?stream=true",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/v1/../metrics",
    "/v1/models/../../admin",
  );
  const ending: fc.Arbitrary<Ending> = fc.oneof(
    w(45, fc.constant<Ending>("sentinel")),
    w(45, fc.constant<Ending>("fin")),
    w(9, fc.constant<Ending>("sentinel+fin")),
    w(1, fc.constant<Ending>("silent")),
  );
  // For inputs left incomplete on purpose: a sentinel would only fill them up.
  const endingIncomplete: fc.Arbitrary<Ending> = fc.oneof(
    w(95, fc.constant<Ending>("fin")),
    w(5, fc.constant<Ending>("silent")),
  );

  const make =
    (family: Family) =>
    ([text, end]: [string, Ending]): HostileCase => ({
      family,
      bytes: Buffer.from(end.startsWith("sentinel") ? text + SENTINEL : text, "latin1"),
      fin: end.endsWith("fin"),
      ending: end,
    });
  const family = (name: Family, text: fc.Arbitrary<string>, end = ending) =>
    fc.tuple(text, end).map(make(name));

  /** POST with an exact Content-Length. */
  const post = (target: string, keys: string[], body: string, extra: string[] = []) =>
    request(
      `POST ${target} HTTP/1.1`,
      [host, ...keys, "Content-Type: application/json", ...extra, `Content-Length: ${body.length}`],
      body,
    );

  // --- bad JSON where routing by model needs it (DESIGN.md "Errors": 400 invalid_request) ---
  const badJsonBody = fc
    .oneof(
      fc.integer({ min: 0, max: routed.length - 1 }).map((n) => routed.slice(0, n)),
      fc
        .constantFrom(
          `{'model':'${model}'}`,
          `{"model":"${model}",}`,
          `{"model":"${model}"/* c */}`,
          `{model:"${model}"}`,
          `{"model":"${model}"}}`,
          `{"model":"${model}"} trailing`,
          `\uFEFF${routed}`,
          `[${routed}]`,
          `"${model}"`,
          "null",
          "42",
          "true",
          `{"model":NaN}`,
          `{"model":"${model}"\u0000}`,
          `{"model":["${model}"]}`,
          `{"model":{"name":"${model}"}}`,
          `{"Model":"${model}"}`,
          `model=${model}&stream=true`,
          "{".repeat(5000),
        )
        .map(utf8),
      fc
        .tuple(fc.integer({ min: 0, max: routed.length - 1 }), fc.integer({ min: 0, max: 255 }))
        .map(([i, byte]) => routed.slice(0, i) + String.fromCharCode(byte) + routed.slice(i + 1)),
      fc.uint8Array({ minLength: 1, maxLength: 512 }).map(latin1),
      fc.constant(latin1(gzipSync(routed))),
      fc.constant(Buffer.from(routed, "utf16le").toString("latin1")),
    )
    .filter((b) => !namesModel(b, model));
  const badJson = family(
    "bad-json",
    fc
      .tuple(keyLines, path, badJsonBody, fc.boolean(), fc.integer({ min: 1, max: 4 }))
      .map(([keys, p, body, isChunked, pieces]) =>
        isChunked
          ? request(
              `POST ${p} HTTP/1.1`,
              [host, ...keys, "Transfer-Encoding: chunked"],
              chunked(body, pieces),
            )
          : post(p, keys, body, body.startsWith("\x1f\x8b") ? ["Content-Encoding: gzip"] : []),
      ),
  );

  // --- oversized and many headers (Node's limit: 16 KiB for the whole head) ---
  const bigHeaders = family(
    "big-headers",
    fc.oneof(
      // One value past the limit; the routed body rides along and must not be held.
      fc
        .tuple(keyLines, fc.integer({ min: 17 * 1024, max: 64 * 1024 }), routedBody)
        .map(([keys, n, body]) => post("/v1/chat/completions", keys, body, [`X-Big: ${"a".repeat(n)}`])),
      // Many small headers, under or over the limit.
      fc.tuple(keyLines, fc.integer({ min: 50, max: 4000 }), ghost).map(([keys, n, body]) =>
        post(
          "/v1/chat/completions",
          keys,
          body,
          Array.from({ length: n }, (_, i) => `X-H${i}: v`),
        ),
      ),
      // A request target past the limit.
      fc
        .integer({ min: 17 * 1024, max: 40 * 1024 })
        .map((n) => request(`GET /${"a".repeat(n)} HTTP/1.1`, [host])),
      // A header name past the limit.
      fc
        .integer({ min: 17 * 1024, max: 20 * 1024 })
        .map((n) => request("GET /x HTTP/1.1", [host, `${"X".repeat(n)}: v`])),
    ),
  );

  /** A complete request for the routed model, smuggled after the outer request's first bytes. */
  const smuggled = (keys: string[]) => post("/v1/chat/completions", keys, routed);

  // --- duplicated Content-Length, equal and different (RFC 9112 §6.3: 400 if they differ) ---
  const dupCl = family(
    "dup-content-length",
    fc
      .tuple(keyLines, ghost, fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 50 }))
      .map(([keys, body, variant, delta]) => {
        const n = body.length;
        const line = `POST /v1/chat/completions HTTP/1.1`;
        const base = [host, ...keys];
        switch (variant) {
          case 0:
            return request(line, [...base, `Content-Length: ${n}`, `Content-Length: ${n}`], body);
          case 1:
            return request(line, [...base, `Content-Length: ${n}`, `Content-Length: ${n + delta}`], body);
          case 2:
            return request(line, [...base, `Content-Length: ${n}, ${n}`], body);
          case 3:
            return request(line, [...base, `Content-Length: ${n},${n + delta}`], body);
          case 4:
            return request(line, [...base, `content-length: ${n}`, `CONTENT-LENGTH: ${n}`], body);
          default: {
            // The classic: the first length says the body is empty, the second covers a
            // complete request for the routed model, which must never be held.
            const inner = smuggled(keys);
            return request(line, [...base, "Content-Length: 0", `Content-Length: ${inner.length}`], inner);
          }
        }
      }),
  );

  // --- Content-Length together with Transfer-Encoding (RFC 9112 §6.1) ---
  const teValues = [
    "chunked",
    "Chunked",
    " chunked",
    "chunked ",
    "\tchunked",
    "chunked, chunked",
    "identity, chunked",
    "gzip, chunked",
    "chunked, identity",
    "identity",
    "x-chunked",
    "chunked;q=1",
    "chunk",
    "",
  ];
  const clTe = family(
    "cl-te-conflict",
    fc
      .tuple(keyLines, fc.constantFrom(...teValues), fc.boolean(), fc.boolean(), ghost)
      .map(([keys, te, teFirst, smuggle, body]) => {
        // CL.TE and TE.CL: framed one way the body ends after "0", the other way it goes on into
        // a request for the routed model.
        const inner = smuggle ? smuggled(keys) : "";
        const payload = smuggle ? `0${CRLF}${CRLF}${inner}` : chunked(body, 2);
        const cl = `Content-Length: ${smuggle ? 5 : payload.length}`;
        const teLine = `Transfer-Encoding: ${te}`;
        return request(
          `POST /v1/chat/completions HTTP/1.1`,
          [host, ...keys, ...(teFirst ? [teLine, cl] : [cl, teLine])],
          payload,
        );
      }),
  );

  // --- bad chunked encoding (RFC 9112 §7.1) ---
  const badChunk = fc.oneof(
    fc.constantFrom("zz", "-1", "", " 5", "0x5", "FFFFFFFFFFFFFFFFFF", `1${"0".repeat(30)}`, "5 5", "+5"),
    fc.stringMatching(/^[G-Zg-z]{1,4}$/),
  );
  const badChunked = family(
    "bad-chunked",
    fc.oneof(
      // A chunk size that is not hex, or too large to represent; the routed body rides along.
      fc
        .tuple(keyLines, badChunk, routedBody)
        .map(([keys, size, body]) =>
          request(
            `POST /v1/chat/completions HTTP/1.1`,
            [host, ...keys, "Transfer-Encoding: chunked"],
            `${size}${CRLF}${body}${CRLF}0${CRLF}${CRLF}`,
          ),
        ),
      // Data longer than its size, or not followed by CRLF.
      fc
        .tuple(keyLines, routedBody, fc.integer({ min: 1, max: 10 }), fc.boolean())
        .map(([keys, body, short, noCrlf]) =>
          request(
            `POST /v1/chat/completions HTTP/1.1`,
            [host, ...keys, "Transfer-Encoding: chunked"],
            noCrlf
              ? `${body.length.toString(16)}${CRLF}${body}0${CRLF}${CRLF}`
              : `${Math.max(1, body.length - short).toString(16)}${CRLF}${body}${CRLF}0${CRLF}${CRLF}`,
          ),
        ),
      // Chunk extensions, valid and not (RFC 9112 §7.1.1), on a body that does not route.
      fc
        .tuple(
          keyLines,
          ghost,
          fc.oneof(
            fc.constantFrom(";a", ";a=b", ';a="q;u\\"o"', "; a = b", ";", ";;", ";=b", ";a\u0000", ";a\rb"),
            fc.integer({ min: 1000, max: 20_000 }).map((n) => `;${"e".repeat(n)}`),
          ),
        )
        .map(([keys, body, ext]) =>
          request(
            `POST /v1/chat/completions HTTP/1.1`,
            [host, ...keys, "Transfer-Encoding: chunked"],
            `${body.length.toString(16)}${ext}${CRLF}${body}${CRLF}0${CRLF}${CRLF}`,
          ),
        ),
      // Bare LF in the chunk framing, garbage trailers, a last chunk that never ends.
      fc.tuple(keyLines, ghost, fc.integer({ min: 0, max: 3 })).map(([keys, body, v]) => {
        const size = body.length.toString(16);
        const tail = [
          `${size}\n${body}\n0\n\n`,
          `${size}${CRLF}${body}${CRLF}0${CRLF}X-Trailer: \u0000${CRLF}${CRLF}`,
          `${size}${CRLF}${body}${CRLF}0${CRLF}not a trailer${CRLF}${CRLF}`,
          `${size}${CRLF}${body}${CRLF}0`,
        ][v] as string;
        return request(
          `POST /v1/chat/completions HTTP/1.1`,
          [host, ...keys, "Transfer-Encoding: chunked"],
          tail,
        );
      }),
    ),
  );

  // --- NUL and control bytes in the request line and headers ---
  const controlByte = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.constantFrom(0x7f, 0x80, 0xa0, 0xff));
  const controlBytes = family(
    "control-bytes",
    fc.tuple(keyLines, ghost, controlByte, fc.nat(), fc.boolean()).map(([keys, body, byte, pos, replace]) => {
      const text = post("/v1/chat/completions", keys, body);
      const headEnd = text.indexOf(CRLF + CRLF);
      const at = pos % headEnd;
      return text.slice(0, at) + String.fromCharCode(byte) + text.slice(replace ? at + 1 : at);
    }),
  );

  // --- absurd Content-Length values ---
  const absurdValue = fc.oneof(
    fc.constantFrom(
      "-1",
      "-0",
      "- 1",
      "1e3",
      "0x10",
      "abc",
      "",
      " ",
      "1.0",
      "+5",
      "5 5",
      utf8("\u0663"),
      "99999999999999999999999999999",
      "18446744073709551616",
      "9007199254740993",
      "4294967296",
    ),
    fc.integer({ min: o.maxBodyBytes + 1, max: o.maxBodyBytes * 1000 }).map(String),
    fc.integer({ min: 1, max: o.maxBodyBytes }).map(String),
  );
  const absurdCl = family(
    "absurd-content-length",
    fc.tuple(keyLines, absurdValue, routedBody, fc.boolean()).map(([keys, value, body, withBody]) =>
      // A value that parses and is larger than what is sent leaves the body cut short: fine,
      // never held. One that is smaller cuts the routed JSON: invalid, never held.
      request(
        `POST /v1/chat/completions HTTP/1.1`,
        [host, ...keys, `Content-Length: ${value}`],
        withBody
          ? body.slice(0, Math.max(0, Math.min(body.length, Number(value) - 1 || body.length - 1)))
          : "",
      ),
    ),
    endingIncomplete,
  );

  // --- HTTP/1.0, with and without bodies, with and without Host ---
  const http10 = family(
    "http-1.0",
    fc
      .tuple(
        keyLines,
        fc.constantFrom("GET", "POST", "PUT", "OPTIONS"),
        path,
        ghost,
        fc.integer({ min: 0, max: 3 }),
        fc.boolean(),
        fc.boolean(),
      )
      .map(([keys, method, p, body, framing, withHost, keepAlive]) => {
        const headers = [
          ...(withHost ? [host] : []),
          ...keys,
          ...(keepAlive ? ["Connection: keep-alive"] : []),
        ];
        const line = `${method} ${p} HTTP/1.0`;
        if (framing === 0) return request(line, headers);
        if (framing === 1) return request(line, [...headers, `Content-Length: ${body.length}`], body);
        // HTTP/1.0 has no chunked coding (RFC 9112 §6.1), and without a length there is no body.
        if (framing === 2) return request(line, [...headers, "Transfer-Encoding: chunked"], chunked(body, 2));
        return request(line, headers, body);
      }),
  );

  // --- valid requests that are not held, followed by pipelined garbage ---
  const notHeld = fc.oneof(
    fc.tuple(keyLines, ghost).map(([keys, body]) => post("/v1/chat/completions", keys, body)),
    fc.tuple(keyLines, path).map(([keys, p]) => request(`GET ${p} HTTP/1.1`, [host, ...keys])),
    // A method that does not wake the target, with the routed model: 503 target_cold.
    fc
      .tuple(keyLines, routedBody)
      .map(([keys, body]) =>
        request("GET /v1/chat/completions HTTP/1.1", [host, ...keys, `Content-Length: ${body.length}`], body),
      ),
  );
  const garbageTail = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 256 }).map(latin1),
    fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 256 }),
    fc.constantFrom(
      `POST /v1/chat/completions HTTP/1.1${CRLF}Content-Le`,
      `\u0000\u0000\u0000\u0000`,
      `${CRLF}${CRLF}${CRLF}`,
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
      `GET http://internal-admin.svc/ HTTP/1.1${CRLF}${host}${CRLF}${CRLF}`,
    ),
  );
  const pipelined = family(
    "pipelined-garbage",
    fc
      .tuple(fc.array(notHeld, { minLength: 1, maxLength: 20 }), garbageTail)
      .map(([requests, tail]) => requests.join("") + tail),
  );

  // --- request targets that are not origin-form (DESIGN.md: 400 invalid_request) ---
  const targets = fc.constantFrom(
    "http://internal-admin.svc/secret",
    "https://internal-admin.svc/v1/chat/completions",
    "http://user:pass@internal-admin.svc/",
    "HTTP://INTERNAL-ADMIN.SVC/v1/chat/completions",
    "http://127.0.0.1:9090/metrics",
    "http:/v1/chat/completions",
    "http:v1/chat/completions",
    "*",
    "internal-admin.svc:443",
    "v1/chat/completions",
    "?model=x",
    "#frag",
    "\\v1\\chat\\completions",
    "%2Fv1%2Fchat%2Fcompletions",
  );
  const requestTarget = family(
    "request-target",
    fc.oneof(
      fc
        .tuple(keyLines, fc.constantFrom("POST", "GET", "OPTIONS", "PUT"), targets, routedBody)
        .map(([keys, method, t, body]) =>
          request(`${method} ${t} HTTP/1.1`, [host, ...keys, `Content-Length: ${body.length}`], body),
        ),
      // CONNECT, authority-form, with and without a body.
      fc
        .tuple(keyLines, fc.boolean(), routedBody)
        .map(([keys, withBody, body]) =>
          withBody
            ? request(
                "CONNECT internal-admin.svc:443 HTTP/1.1",
                [host, ...keys, `Content-Length: ${body.length}`],
                body,
              )
            : request("CONNECT internal-admin.svc:443 HTTP/1.1", ["Host: internal-admin.svc:443", ...keys]),
        ),
    ),
  );

  // --- Upgrade and HTTP/2 attempts ---
  const upgrade = family(
    "upgrade-h2c",
    fc.oneof(
      fc
        .tuple(keyLines, path)
        .map(([keys, p]) =>
          request(`GET ${p} HTTP/1.1`, [
            host,
            ...keys,
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
          ]),
        ),
      fc
        .tuple(keyLines, path)
        .map(([keys, p]) =>
          request(`GET ${p} HTTP/1.1`, [
            host,
            ...keys,
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          ]),
        ),
      fc
        .tuple(keyLines, ghost)
        .map(([keys, body]) =>
          post("/v1/chat/completions", keys, body, ["Connection: Upgrade", "Upgrade: foo/1, h2c"]),
        ),
      // The HTTP/2 connection preface with a SETTINGS frame, then noise.
      fc
        .uint8Array({ maxLength: 64 })
        .map(
          (b) =>
            `PRI * HTTP/2.0${CRLF}${CRLF}SM${CRLF}${CRLF}\u0000\u0000\u0000\u0004\u0000\u0000\u0000\u0000\u0000${latin1(b)}`,
        ),
    ),
  );

  // --- bad and odd methods (never HEAD: its answer has no body, which a raw reader cannot know) ---
  const method = fc
    .oneof(
      fc.stringMatching(/^[A-Z]{1,12}$/),
      fc.constantFrom(
        "post",
        "Post",
        "P0ST",
        "POST\u0000",
        "PO ST",
        "!#$%&",
        "PROPFIND",
        "MKCOL",
        "PURGE",
        "SEARCH",
        "QUERY",
        "TRACE",
        "M-SEARCH",
        "SOURCE",
        "ACL",
        "REPORT",
        "LINK",
        utf8("PÖST"),
      ),
      fc.integer({ min: 100, max: 4000 }).map((n) => "A".repeat(n)),
    )
    .filter((m) => m !== "POST" && m !== "HEAD");
  const badMethod = family(
    "bad-method",
    // The routed model in the body: a method that parses must still not wake (DESIGN.md step 4).
    fc
      .tuple(keyLines, method, routedBody)
      .map(([keys, m, body]) =>
        request(
          `${m} /v1/chat/completions HTTP/1.1`,
          [host, ...keys, `Content-Length: ${body.length}`],
          body,
        ),
      ),
  );

  // --- Host: missing on HTTP/1.1 (RFC 9112 §3.2: 400), duplicated, odd ---
  const hostFamily = family(
    "host",
    fc.oneof(
      w(
        3,
        fc
          .tuple(keyLines, routedBody)
          .map(([keys, body]) =>
            request("POST /v1/chat/completions HTTP/1.1", [...keys, `Content-Length: ${body.length}`], body),
          ),
      ),
      w(
        2,
        fc
          .tuple(
            keyLines,
            ghost,
            fc.constantFrom(
              ["Host: a.test", "Host: a.test"],
              ["Host: a.test", "Host: internal-admin.svc"],
              ["Host:"],
              ["Host: a b"],
              ["Host: a.test/evil"],
              ["Host: [::1"],
              ["Host: a.test:99999"],
              ["Host: user@a.test"],
            ),
          )
          .map(([keys, body, hosts]) =>
            request(
              "POST /v1/chat/completions HTTP/1.1",
              [...hosts, ...keys, `Content-Length: ${body.length}`],
              body,
            ),
          ),
      ),
    ),
  );

  // --- obs-fold: header line folding (RFC 9112 §5.2) ---
  const obsFold = family(
    "obs-fold",
    fc
      .tuple(keyLines, ghost, fc.constantFrom(" ", "\t", "  \t"), fc.integer({ min: 0, max: 2 }))
      .map(([keys, body, ws, where]) => {
        const folded = [
          [`X-Folded: a`, `${ws}b`],
          [`Content-Type: application/json;`, `${ws}charset=utf-8`],
          [`Content-Length:`, `${ws}${body.length}`],
        ][where] as string[];
        const cl = where === 2 ? [] : [`Content-Length: ${body.length}`];
        return request("POST /v1/chat/completions HTTP/1.1", [host, ...keys, ...folded, ...cl], body);
      }),
  );

  // --- a request line with no (or a broken) version ---
  const noVersion = family(
    "no-version",
    fc
      .tuple(
        keyLines,
        fc.constantFrom("GET", "POST", "OPTIONS"),
        path,
        fc.constantFrom(
          "",
          " HTTP",
          " HTTP/",
          " HTTP/1",
          " HTTP/1.1.1",
          " http/1.1",
          " HTTP/11",
          " HTTP/1.1 extra",
          " HTTP/3.0",
        ),
        ghost,
        fc.boolean(),
      )
      .map(([keys, m, p, version, body, withHeaders]) =>
        withHeaders
          ? request(`${m} ${p}${version}`, [host, ...keys, `Content-Length: ${body.length}`], body)
          : `${m} ${p}${version}${CRLF}${CRLF}`,
      ),
  );

  // --- bare LF (and bare CR) line endings ---
  const bareLf = family(
    "bare-lf",
    fc.tuple(keyLines, ghost, fc.integer({ min: 0, max: 3 })).map(([keys, body, v]) => {
      const text = post("/v1/chat/completions", keys, body);
      const headEnd = text.indexOf(CRLF + CRLF) + 4;
      const head = text.slice(0, headEnd);
      const rest = text.slice(headEnd);
      if (v === 0) return head.replaceAll(CRLF, "\n") + rest;
      if (v === 1) return head.replace(CRLF, "\n") + rest;
      if (v === 2) return head.replaceAll(CRLF, "\r") + rest;
      return head.replaceAll(CRLF, "\n\r") + rest;
    }),
  );

  // --- bodies (and heads) cut short ---
  const cutShort = family(
    "cut-short",
    fc.oneof(
      // Routed body, Content-Length announced in full, a prefix sent.
      fc.tuple(keyLines, routedBody, fc.nat()).map(([keys, body, n]) => {
        const text = post("/v1/chat/completions", keys, body);
        return text.slice(0, text.length - 1 - (n % body.length));
      }),
      // Chunked, cut inside or after a chunk, never the last chunk.
      fc.tuple(keyLines, routedBody, fc.nat()).map(([keys, body, n]) => {
        const text = request(
          `POST /v1/chat/completions HTTP/1.1`,
          [host, ...keys, "Transfer-Encoding: chunked"],
          chunked(body, 3),
        );
        return text.slice(0, text.length - 3 - (n % (body.length + 10)));
      }),
      // The head itself cut anywhere.
      fc.tuple(keyLines, routedBody, fc.nat()).map(([keys, body, n]) => {
        const text = post("/v1/chat/completions", keys, body);
        return text.slice(0, n % text.indexOf(CRLF + CRLF));
      }),
    ),
    endingIncomplete,
  );

  // --- Expect (RFC 9110 §10.1.1) ---
  const expect = family(
    "expect",
    fc
      .tuple(
        keyLines,
        ghost,
        fc.constantFrom("100-continue", "100-Continue", "200-ok", "", "100-continue, foo", "bogus"),
      )
      .map(([keys, body, e]) => post("/v1/chat/completions", keys, body, [`Expect: ${e}`])),
  );

  // --- methods that do not wake a cold target, with the routed model (DESIGN.md step 4) ---
  const nonWake = family(
    "non-wake-method",
    fc
      .tuple(keyLines, fc.constantFrom("GET", "PUT", "PATCH", "DELETE", "OPTIONS"), routedBody, fc.boolean())
      .map(([keys, m, body, isChunked]) =>
        isChunked
          ? request(
              `${m} /v1/chat/completions HTTP/1.1`,
              [host, ...keys, "Transfer-Encoding: chunked"],
              chunked(body, 2),
            )
          : request(
              `${m} /v1/chat/completions HTTP/1.1`,
              [host, ...keys, `Content-Length: ${body.length}`],
              body,
            ),
      ),
  );

  // --- noise: bytes that are not HTTP at all ---
  const noise = family(
    "noise",
    fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 2048 }).map(latin1),
      fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 512 }),
      fc
        .array(
          fc.constantFrom(
            "GET",
            "POST",
            " ",
            "/",
            "HTTP/1.1",
            CRLF,
            ":",
            "Host",
            "Content-Length",
            "0",
            "chunked",
          ),
          { minLength: 1, maxLength: 40 },
        )
        .map((parts) => parts.join("")),
    ),
  );

  // --- a well-formed request (for a model that does not route) with a few random edits ---
  const edit = fc.tuple(
    fc.constantFrom("insert", "delete", "replace"),
    fc.nat(),
    fc.integer({ min: 0, max: 255 }),
  );
  const mutated = family(
    "mutated",
    fc
      .tuple(keyLines, farGhost, fc.array(edit, { minLength: 1, maxLength: 5 }))
      .map(([keys, body, edits]) => {
        let text = post("/v1/chat/completions", keys, body);
        for (const [op, pos, byte] of edits) {
          const at = pos % Math.max(1, text.length);
          const c = String.fromCharCode(byte);
          if (op === "insert") text = text.slice(0, at) + c + text.slice(at);
          else if (op === "delete") text = text.slice(0, at) + text.slice(at + 1);
          else text = text.slice(0, at) + c + text.slice(at + 1);
        }
        return text;
      }),
  );

  return fc.oneof(
    badJson,
    bigHeaders,
    dupCl,
    clTe,
    badChunked,
    controlBytes,
    absurdCl,
    http10,
    pipelined,
    requestTarget,
    upgrade,
    badMethod,
    hostFamily,
    obsFold,
    noVersion,
    bareLf,
    cutShort,
    expect,
    nonWake,
    noise,
    mutated,
  );
}
