/**
 * The hold queue keeps arrival order through arrivals, removals and put-backs, checked against
 * a sorted-array model over random operation sequences; and a put-back costs O(log n), counted
 * as heap steps rather than timed.
 */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { HoldQueue, type Queued } from "../../src/hold/queue.js";

class T implements Queued<T> {
  prev: T | undefined;
  next: T | undefined;
  linked = false;
  heapIndex = -1;
  constructor(readonly seq: number) {}
}

describe("HoldQueue", () => {
  test("matches a sorted model for any sequence of arrivals, removals, shifts and put-backs", () => {
    const op = fc.oneof(
      fc.constant({ kind: "arrive" as const }),
      fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }),
      fc.constant({ kind: "shift" as const }),
      fc.record({ kind: fc.constant("putBack" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const q = new HoldQueue<T>();
        const model: T[] = [];
        const out: T[] = [];
        let seq = 0;
        for (const o of ops) {
          if (o.kind === "arrive") {
            const t = new T(++seq);
            expect(q.insert(t)).toBe(model.length);
            model.push(t);
          } else if (o.kind === "remove" && model.length > 0) {
            const t = model.splice(o.pick % model.length, 1)[0] as T;
            expect(q.remove(t)).toBe(true);
            expect(q.remove(t)).toBe(false);
          } else if (o.kind === "shift" && model.length > 0) {
            const t = q.peek() as T;
            expect(t).toBe(model[0]);
            q.remove(t);
            model.shift();
            out.push(t);
          } else if (o.kind === "putBack" && out.length > 0) {
            const t = out.splice(o.pick % out.length, 1)[0] as T;
            const ahead = q.insert(t, true);
            const at = model.findIndex((m) => m.seq > t.seq);
            const index = at < 0 ? model.length : at;
            expect(ahead).toBe(index);
            model.splice(index, 0, t);
          }
          expect(q.size).toBe(model.length);
          expect(q.ordered()).toEqual(model);
          expect(q.peek()).toBe(model[0]);
        }
      }),
      { numRuns: 300 },
    );
  });

  test("putting back a released batch of 5,000 in any order costs O(log n) heap steps each", () => {
    const q = new HoldQueue<T>();
    const all = Array.from({ length: 10_000 }, (_, i) => new T(i + 1));
    for (const t of all) q.insert(t);
    const batch = all.slice(0, 5000);
    for (const t of batch) q.remove(t);
    // Count the heap's moves through heapIndex writes.
    let writes = 0;
    for (const t of batch) {
      let v = -1;
      Object.defineProperty(t, "heapIndex", {
        get: () => v,
        set: (x: number) => {
          writes++;
          v = x;
        },
      });
    }
    // In arrival order, reversed: both the shapes a batch of answers comes back in.
    for (const t of batch.slice(0, 2500)) q.insert(t);
    for (const t of batch.slice(2500).reverse()) q.insert(t);
    expect(q.size).toBe(10_000);
    expect(q.ordered().map((t) => t.seq)).toEqual(all.map((t) => t.seq));
    // A walk from the head would take ~12.5 million steps; log2(5000) ≈ 13 per insert.
    expect(writes).toBeLessThan(5000 * 15);
  });
});
