import { describe, expect, test } from "vitest";
import { Fifo, type Linked } from "../../src/hold/fifo.js";

class Node implements Linked<Node> {
  prev: Node | undefined;
  next: Node | undefined;
  linked = false;
  constructor(readonly id: number) {}
}

const ids = (f: Fifo<Node>) => [...f].map((n) => n.id);

describe("Fifo", () => {
  test("push and shift keep arrival order; unshift puts a node back at the head", () => {
    const f = new Fifo<Node>();
    const nodes = [1, 2, 3, 4].map((i) => new Node(i));
    for (const n of nodes) f.push(n);
    expect(f.shift()?.id).toBe(1);
    f.unshift(nodes[0] as Node);
    expect(ids(f)).toEqual([1, 2, 3, 4]);
    expect(f.size).toBe(4);
  });

  test("remove from head, middle and tail keeps the links consistent", () => {
    const f = new Fifo<Node>();
    const nodes = [1, 2, 3, 4, 5].map((i) => new Node(i));
    for (const n of nodes) f.push(n);
    expect(f.remove(nodes[2] as Node)).toBe(true);
    expect(f.remove(nodes[0] as Node)).toBe(true);
    expect(f.remove(nodes[4] as Node)).toBe(true);
    expect(ids(f)).toEqual([2, 4]);
    expect(f.remove(nodes[2] as Node)).toBe(false);
    expect(f.size).toBe(2);
    f.push(nodes[0] as Node);
    expect(ids(f)).toEqual([2, 4, 1]);
  });

  test("a node cannot be queued twice", () => {
    const f = new Fifo<Node>();
    const n = new Node(1);
    f.push(n);
    expect(() => f.push(n)).toThrow();
    expect(() => f.unshift(n)).toThrow();
  });

  test("size always equals what iteration sees, under random operations", () => {
    const f = new Fifo<Node>();
    const all = Array.from({ length: 50 }, (_, i) => new Node(i));
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let step = 0; step < 2000; step++) {
      const n = all[Math.floor(rand() * all.length)] as Node;
      const op = rand();
      if (!n.linked) op < 0.5 ? f.push(n) : f.unshift(n);
      else if (op < 0.5) f.remove(n);
      else f.shift();
      expect([...f].length).toBe(f.size);
    }
  });
});
