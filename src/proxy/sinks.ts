/** A Writable that the forwarder writes a response body into instead of the client. */
import { Writable } from "node:stream";

/**
 * Buffers a body up to `limit` bytes. Past the limit it stops buffering and hands over to the
 * writable that `spill()` returns (with what it had so far), so a large body is relayed, never
 * truncated and never held whole in memory.
 */
export class Collector extends Writable {
  readonly #limit: number;
  readonly #spill: (() => Writable) | undefined;
  readonly #onEnd: ((body: Buffer) => void) | undefined;
  #chunks: Buffer[] = [];
  #size = 0;
  #spilled: Writable | undefined;

  constructor(limit: number, options?: { spill?: () => Writable; onEnd?: (body: Buffer) => void }) {
    super();
    this.#limit = limit;
    this.#spill = options?.spill;
    this.#onEnd = options?.onEnd;
  }

  /** True once the body outgrew the limit and went to the spill target. */
  get spilled(): boolean {
    return this.#spilled !== undefined;
  }

  get body(): Buffer {
    return Buffer.concat(this.#chunks, this.#size);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#spilled) {
      this.#forward(chunk, cb);
      return;
    }
    if (this.#size + chunk.length <= this.#limit || this.#spill === undefined) {
      if (this.#size + chunk.length <= this.#limit) {
        this.#chunks.push(chunk);
        this.#size += chunk.length;
      }
      cb();
      return;
    }
    this.#spilled = this.#spill();
    const head = this.body;
    this.#chunks = [];
    this.#size = 0;
    if (head.length > 0) this.#spilled.write(head);
    this.#forward(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#spilled) this.#spilled.end(() => cb());
    else {
      this.#onEnd?.(this.body);
      cb();
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (err && this.#spilled && !this.#spilled.destroyed) this.#spilled.destroy(err);
    cb(err);
  }

  #forward(chunk: Buffer, cb: (err?: Error | null) => void): void {
    const target = this.#spilled as Writable;
    if (target.write(chunk)) cb();
    else target.once("drain", () => cb());
  }
}
