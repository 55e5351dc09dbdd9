/**
 * Raw TCP clients for tests of the listener's door (README "Bounds"): bytes that fetch would never
 * send, bodies that trickle, connections held open.
 */
import { connect, type Socket } from "node:net";

export interface RawResult {
  /** Everything received until the peer closed or the wait ran out. */
  readonly text: string;
  /** The peer closed the connection (FIN or reset). */
  readonly closed: boolean;
  readonly reset: boolean;
  /** The status of the first response, if one arrived. */
  readonly status: number | undefined;
  /** The first response's JSON body, if it had one. */
  readonly json: unknown;
}

export class RawClient {
  readonly socket: Socket;
  #data = "";
  #closed = false;
  #reset = false;
  #waiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      this.#data += d;
      this.#wake();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNRESET" || err.code === "EPIPE") this.#reset = true;
    });
    socket.on("close", () => {
      this.#closed = true;
      this.#wake();
    });
  }

  static open(url: string): Promise<RawClient> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const s = connect(Number(u.port), u.hostname, () => resolve(new RawClient(s)));
      s.once("error", reject);
    });
  }

  write(bytes: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Waits until `cond` holds on the received text, the socket closes, or `ms` pass. */
  async until(cond: (text: string) => boolean, ms: number): Promise<RawResult> {
    const end = Date.now() + ms;
    while (!cond(this.#data) && !this.#closed && Date.now() < end) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, end - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.result();
  }

  /** Waits for one complete response (by Content-Length or chunked end), a close, or `ms`. */
  response(ms = 5000): Promise<RawResult> {
    return this.until(completeResponse, ms);
  }

  result(): RawResult {
    const text = this.#data;
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    return {
      text,
      closed: this.#closed,
      reset: this.#reset,
      status: m ? Number(m[1]) : undefined,
      json: bodyJson(text),
    };
  }

  close(): void {
    this.socket.destroy();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

function completeResponse(text: string): boolean {
  const head = text.indexOf("\r\n\r\n");
  if (head < 0) return false;
  const headers = text.slice(0, head).toLowerCase();
  const cl = /\r\ncontent-length: *(\d+)/.exec(headers);
  if (cl) return text.length - head - 4 >= Number(cl[1]);
  if (/\r\ntransfer-encoding: *chunked/.test(headers)) return text.includes("\r\n0\r\n\r\n", head);
  return false;
}

/** The JSON body of the first response (de-chunked), or undefined. */
function bodyJson(text: string): unknown {
  const head = text.indexOf("\r\n\r\n");
  if (head < 0) return undefined;
  let body = text.slice(head + 4);
  if (/\r\ntransfer-encoding: *chunked/i.test(text.slice(0, head))) {
    let out = "";
    let rest = body;
    for (;;) {
      const nl = rest.indexOf("\r\n");
      if (nl < 0) break;
      const size = Number.parseInt(rest.slice(0, nl), 16);
      if (!Number.isFinite(size) || size === 0) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    body = out;
  }
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}
