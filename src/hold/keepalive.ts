/**
 * Early SSE for held streaming requests (DESIGN.md step 7): past `hold.keepaliveAfter` the client
 * gets 200 and SSE headers, then a comment line every `hold.keepaliveInterval`, so its header
 * timeout (undici's 300 s) does not fire during a multi-minute cold start.
 */
import type { Config } from "../config/schema.js";
import type { Ticket } from "./ticket.js";

export class Keepalive {
  readonly #hold: Config["hold"];
  readonly #comment: () => string;
  readonly #headersOut: (t: Ticket) => void;

  /**
   * `comment` gives the line's text (the ETA); `headersOut` is told when a ticket's early
   * headers went out (its deadline may change).
   */
  constructor(hold: Config["hold"], comment: () => string, headersOut: (t: Ticket) => void) {
    this.#hold = hold;
    this.#comment = comment;
    this.#headersOut = headersOut;
  }

  /** A streaming ticket joined the queue: arm its next keepalive (headers first, if not out yet). */
  arm(t: Ticket): void {
    this.#schedule(t, t.ex.earlyStream ? this.#hold.keepaliveInterval : this.#hold.keepaliveAfter);
  }

  /** The ticket left the queue for a replay: no comment may interleave with its answer. */
  stop(t: Ticket): void {
    if (t.keepaliveTimer) clearTimeout(t.keepaliveTimer);
    t.keepaliveTimer = undefined;
  }

  #schedule(t: Ticket, delay: number): void {
    if (t.keepaliveTimer) clearTimeout(t.keepaliveTimer);
    t.keepaliveTimer = setTimeout(() => {
      t.keepaliveTimer = undefined;
      if (t.settled || !t.linked) return;
      const comment = this.#comment();
      if (!t.ex.earlyStream) {
        t.ex.startEarlyStream(comment);
        this.#headersOut(t);
      } else {
        t.ex.comment(comment);
      }
      this.#schedule(t, this.#hold.keepaliveInterval);
    }, delay);
  }
}
