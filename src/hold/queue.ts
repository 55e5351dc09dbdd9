/**
 * The hold queue of one gate, in arrival order (its `seq`), with O(1) arrival, O(1) removal of a
 * new arrival (a client that went away) and O(log n) put-back of a replay sent back.
 *
 * New arrivals have the highest seq so far and go to the tail of an intrusive FIFO, which then
 * stays sorted. A replay sent back (a cold or overload answer) has a lower seq than most of the
 * queue; walking the FIFO to its place would make a batch of k such answers O(k²) (about 12
 * million steps for 5,000), so it goes into a binary min-heap by seq instead. The head of the
 * queue is the lower of the two heads.
 */
import { Fifo, type Linked } from "./fifo.js";

export interface Queued<T> extends Linked<T> {
  readonly seq: number;
  /** Its index in the put-back heap; -1 when it is not there. */
  heapIndex: number;
}

export class HoldQueue<T extends Queued<T>> {
  readonly #fifo = new Fifo<T>();
  readonly #heap: T[] = [];

  get size(): number {
    return this.#fifo.size + this.#heap.length;
  }

  /** The ticket with the lowest seq. */
  peek(): T | undefined {
    const a = this.#fifo.peek();
    const b = this.#heap[0];
    if (a === undefined) return b;
    if (b === undefined) return a;
    return b.seq < a.seq ? b : a;
  }

  /**
   * Queues `t` at its place by seq. Returns how many are ahead of it when that is cheap to know
   * (a new arrival), or, when `count` asks, at O(n) cost; else -1.
   */
  insert(t: T, count = false): number {
    const tail = this.#fifo.last();
    if (tail === undefined || tail.seq < t.seq) {
      const ahead = this.size;
      this.#fifo.push(t);
      return ahead;
    }
    this.#heapPush(t);
    if (!count) return -1;
    let ahead = 0;
    for (const x of this.#fifo) {
      if (x.seq >= t.seq) break;
      ahead++;
    }
    for (const x of this.#heap) if (x.seq < t.seq) ahead++;
    return ahead;
  }

  /** Returns false when `t` was not queued. */
  remove(t: T): boolean {
    if (!t.linked) return false;
    if (t.heapIndex < 0) return this.#fifo.remove(t);
    this.#heapRemove(t.heapIndex);
    return true;
  }

  /** Every queued ticket, lowest seq first (a copy: safe to remove while iterating). */
  ordered(): T[] {
    const heap = [...this.#heap].sort((a, b) => a.seq - b.seq);
    const out: T[] = [];
    let i = 0;
    for (const t of this.#fifo) {
      while (i < heap.length && (heap[i] as T).seq < t.seq) out.push(heap[i++] as T);
      out.push(t);
    }
    while (i < heap.length) out.push(heap[i++] as T);
    return out;
  }

  #heapPush(t: T): void {
    if (t.linked) throw new Error("node already queued");
    t.linked = true;
    t.heapIndex = this.#heap.length;
    this.#heap.push(t);
    this.#up(t.heapIndex);
  }

  #heapRemove(i: number): void {
    const heap = this.#heap;
    const t = heap[i] as T;
    const last = heap.pop() as T;
    if (last !== t) {
      heap[i] = last;
      last.heapIndex = i;
      this.#down(i);
      this.#up(last.heapIndex);
    }
    t.heapIndex = -1;
    t.linked = false;
  }

  #up(i: number): void {
    const heap = this.#heap;
    const t = heap[i] as T;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p] as T;
      if (parent.seq <= t.seq) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    heap[i] = t;
    t.heapIndex = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const t = heap[i] as T;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (heap[r] as T).seq < (heap[l] as T).seq ? r : l;
      const child = heap[c] as T;
      if (child.seq >= t.seq) break;
      heap[i] = child;
      child.heapIndex = i;
      i = c;
    }
    heap[i] = t;
    t.heapIndex = i;
  }
}
