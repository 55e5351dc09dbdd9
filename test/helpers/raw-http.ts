/**
 * One raw TCP conversation with a strict reading of what comes back, for the hostile-input suite
 * (README "Bounds"): every byte a server sends must parse as complete HTTP/1.1 responses, so a
 * truncated answer, a stray byte or an answer that never ends is told apart from a clean close.
 * (test/helpers/raw.ts is the simpler interactive client; this one reads many pipelined answers.)
 */
import { connect, type Socket } from "node:net";

export interface RawResponse {
  readonly status: number;
  /** Lowercased names; repeated fields keep every value. */
  readonly headers: ReadonlyMap<string, readonly string[]>;
  readonly body: Buffer;
}

export interface ParsedStream {
  /** Final (non-1xx) responses, in order. */
  readonly responses: RawResponse[];
  /** 1xx interim responses seen (100 Continue). */
  readonly interim: number[];
  /** Bytes after the last complete response: the start of one still coming, or garbage. */
  readonly rest: Buffer;
  /** Why `rest` can never become a response (it is not HTTP), if it cannot. */
  readonly error: string | undefined;
}

const CRLF2 = Buffer.from("\r\n\r\n");

/**
 * Splits `data` into responses. `closed`: the peer has closed, so a response delimited by the
 * close (no Content-Length, not chunked: HTTP/1.0 style) is complete at the end of `data`.
 */
export function parseResponses(data: Buffer, closed: boolean): ParsedStream {
  const responses: RawResponse[] = [];
  const interim: number[] = [];
  let at = 0;
  for (;;) {
    if (at === data.length) return { responses, interim, rest: Buffer.alloc(0), error: undefined };
    const rest = data.subarray(at);
    const fail = (error: string | undefined): ParsedStream => ({ responses, interim, rest, error });
    if (!startsLikeStatusLine(rest)) return fail("bytes that do not start a status line");
    const headEnd = rest.indexOf(CRLF2);
    if (headEnd < 0) return fail(rest.length > 64 * 1024 ? "a response head over 64 KiB" : undefined);
    const lines = rest.subarray(0, headEnd).toString("latin1").split("\r\n");
    const m = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/.exec(lines[0] as string);
    if (!m) return fail(`a malformed status line ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers = new Map<string, string[]>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0 || /[\s]/.test(line.slice(0, colon)))
        return fail(`a malformed header ${JSON.stringify(line)}`);
      const name = line.slice(0, colon).toLowerCase();
      const list = headers.get(name) ?? [];
      list.push(line.slice(colon + 1).trim());
      headers.set(name, list);
    }
    const bodyAt = headEnd + 4;
    if (status >= 100 && status < 200) {
      interim.push(status);
      at += bodyAt;
      continue;
    }
    const te = headers.get("transfer-encoding");
    const cl = headers.get("content-length");
    if (te !== undefined && cl !== undefined)
      return fail("a response with both Content-Length and Transfer-Encoding");
    let body: Buffer;
    let used: number;
    if (te !== undefined) {
      if (te.join(",").toLowerCase() !== "chunked") return fail(`Transfer-Encoding ${te.join(",")}`);
      const chunked = dechunk(rest.subarray(bodyAt));
      if (typeof chunked === "string") return fail(chunked);
      if (chunked === undefined) return fail(undefined);
      body = chunked.body;
      used = bodyAt + chunked.used;
    } else if (cl !== undefined) {
      if (cl.length !== 1 || !/^\d+$/.test(cl[0] as string)) return fail(`Content-Length ${cl.join(",")}`);
      const n = Number(cl[0]);
      if (rest.length - bodyAt < n) return fail(undefined);
      body = rest.subarray(bodyAt, bodyAt + n);
      used = bodyAt + n;
    } else if (status === 204 || status === 304) {
      body = Buffer.alloc(0);
      used = bodyAt;
    } else {
      // Delimited by the close (RFC 9112 §6.3, last rule).
      if (!closed) return fail(undefined);
      body = rest.subarray(bodyAt);
      used = rest.length;
    }
    responses.push({ status, headers, body });
    at += used;
  }
}

function startsLikeStatusLine(b: Buffer): boolean {
  const want = "HTTP/1.";
  const n = Math.min(b.length, want.length);
  return b.subarray(0, n).toString("latin1") === want.slice(0, n);
}

/** A chunked body: the body and the bytes it took, undefined while incomplete, or why it is wrong. */
function dechunk(b: Buffer): { body: Buffer; used: number } | string | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const nl = b.indexOf("\r\n", at);
    if (nl < 0) return b.length - at > 1024 ? "a chunk size line over 1 KiB" : undefined;
    const line = b.subarray(at, nl).toString("latin1");
    if (!/^[0-9a-fA-F]{1,8}$/.test(line)) return `a chunk size line ${JSON.stringify(line)}`;
    const size = Number.parseInt(line, 16);
    at = nl + 2;
    if (size === 0) {
      // Trailer fields until the empty line.
      for (;;) {
        const end = b.indexOf("\r\n", at);
        if (end < 0) return undefined;
        if (end === at) return { body: Buffer.concat(parts), used: end + 2 };
        at = end + 2;
      }
    }
    if (b.length < at + size + 2) return undefined;
    parts.push(b.subarray(at, at + size));
    if (b[at + size] !== 13 || b[at + size + 1] !== 10) return "chunk data not followed by CRLF";
    at += size + 2;
  }
}

export type Ending =
  /** The server closed the connection (FIN or reset). */
  | "closed"
  /** We closed it: an answer came and then nothing more for `quietMs`, the connection kept alive. */
  | "quiet"
  /** Nothing, or no complete answer, within `maxMs`, and the connection still open: a hang. */
  | "hung";

export interface Conversation {
  readonly ending: Ending;
  readonly reset: boolean;
  readonly parsed: ParsedStream;
  readonly received: Buffer;
}

export interface ConversationOptions {
  /** Half-close our side after writing (FIN), as a client that has nothing more to send. */
  readonly fin: boolean;
  /** After a complete answer on a connection kept alive: how long no further byte means "done". */
  readonly quietMs: number;
  /** The hang bound: the conversation is cut and reported "hung" past it. */
  readonly maxMs: number;
}

/**
 * Opens tracked sockets and closes them all on `closeAll()`, so a test that fails midway leaves
 * none open.
 */
export class RawConversations {
  readonly #host: string;
  readonly #port: number;
  readonly #open = new Set<Socket>();

  constructor(url: string) {
    const u = new URL(url);
    this.#host = u.hostname;
    this.#port = Number(u.port);
  }

  /** Writes `bytes` on a new connection and reads until the server closes, goes quiet, or `maxMs`. */
  talk(bytes: Buffer, o: ConversationOptions): Promise<Conversation> {
    return new Promise((resolve) => {
      const socket = connect({ host: this.#host, port: this.#port, allowHalfOpen: true });
      this.#open.add(socket);
      const received: Buffer[] = [];
      let size = 0;
      let reset = false;
      let settled = false;
      let quiet: NodeJS.Timeout | undefined;
      const finish = (ending: Ending) => {
        if (settled) return;
        settled = true;
        clearTimeout(hang);
        clearTimeout(quiet);
        socket.destroy();
        this.#open.delete(socket);
        const all = Buffer.concat(received, size);
        resolve({ ending, reset, parsed: parseResponses(all, ending === "closed"), received: all });
      };
      const hang = setTimeout(() => finish("hung"), o.maxMs);
      socket.on("data", (d: Buffer) => {
        received.push(d);
        size += d.length;
        clearTimeout(quiet);
        const parsed = parseResponses(Buffer.concat(received, size), false);
        const last = parsed.responses.at(-1);
        if (last === undefined || parsed.rest.length > 0) return;
        // An answer that says the connection ends: the server's close follows; wait for it (it is
        // what tells a clean close from a hang), but a complete answer is what we came for.
        if (last.headers.get("connection")?.some((v) => v.toLowerCase() === "close")) return;
        quiet = setTimeout(() => finish("quiet"), o.quietMs);
      });
      socket.on("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "ECONNRESET" || err.code === "EPIPE") reset = true;
        finish("closed");
      });
      // The read side ended (the server's FIN); ours may still be open with allowHalfOpen.
      socket.on("end", () => finish("closed"));
      socket.on("close", () => finish("closed"));
      socket.write(bytes, (err) => {
        if (!err && o.fin) socket.end();
      });
    });
  }

  get openCount(): number {
    return this.#open.size;
  }

  closeAll(): void {
    for (const s of this.#open) s.destroy();
    this.#open.clear();
  }
}
