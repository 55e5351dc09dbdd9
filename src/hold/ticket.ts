import type { Exchange } from "../proxy/exchange.js";
import type { Queued } from "./queue.js";

/**
 * One held request. A ticket is either in its gate's FIFO (held), out of it with a replay
 * running (replaying), or settled; it is settled exactly once, and only settle() clears its
 * timers.
 */
export class Ticket implements Queued<Ticket> {
  prev: Ticket | undefined;
  next: Ticket | undefined;
  linked = false;
  heapIndex = -1;

  readonly ex: Exchange;
  /** The exchange's arrival order in its gate (strict FIFO across replays sent back). */
  readonly seq: number;
  /** performance.now() past which the ticket answers cold_start_timeout. */
  deadline: number;
  /** The deadline came from the client's stated timeout or the edge's, not holdTimeout. */
  clientBound: boolean;
  /** It was the edge's (limits.edgeTimeout), not the client's own. */
  edgeBound = false;
  /** Held time summed over every stay in the queue (a replay sent back counts again). */
  heldMs = 0;
  /** performance.now() when the current stay in the queue began. */
  heldSince: number;
  settled = false;
  /** Extra tries spent on overload answers and dropped connections (release.retries). */
  retries = 0;
  /**
   * The gate's cold epoch when it was held while ready, -1 when a cold start held it: with the
   * epoch unchanged at its deadline, only capacity held it (503 overloaded, not a cold start).
   */
  readyEpoch = -1;
  /** The deadline passed during a replay; the replay's outcome decides what the client hears. */
  expired = false;
  deadlineTimer: NodeJS.Timeout | undefined;
  keepaliveTimer: NodeJS.Timeout | undefined;

  constructor(ex: Exchange, deadline: number, clientBound: boolean, now: number) {
    this.ex = ex;
    this.seq = ex.seq;
    this.deadline = deadline;
    this.clientBound = clientBound;
    this.heldSince = now;
  }

  /** Ends the current stay in the queue; returns the total held time so far. */
  leaveQueue(now: number): number {
    this.heldMs += now - this.heldSince;
    return this.heldMs;
  }

  clearTimers(): void {
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    if (this.keepaliveTimer) clearTimeout(this.keepaliveTimer);
    this.deadlineTimer = undefined;
    this.keepaliveTimer = undefined;
  }
}
