/**
 * An intrusive doubly-linked FIFO: O(1) push, shift and remove (a client that went away), and an
 * insert before a given node (a replay sent back, re-queued by its arrival order), with no
 * per-operation allocation. Arrays make removal O(n), which a flood of aborts at 10,000 held turns
 * quadratic.
 */

export interface Linked<T> {
  prev: T | undefined;
  next: T | undefined;
  /** Set while the node is in a list; guards against double insertion or removal. */
  linked: boolean;
}

export class Fifo<T extends Linked<T>> {
  #head: T | undefined;
  #tail: T | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  peek(): T | undefined {
    return this.#head;
  }

  last(): T | undefined {
    return this.#tail;
  }

  push(node: T): void {
    if (node.linked) throw new Error("node already queued");
    node.linked = true;
    node.prev = this.#tail;
    node.next = undefined;
    if (this.#tail) this.#tail.next = node;
    else this.#head = node;
    this.#tail = node;
    this.#size++;
  }

  unshift(node: T): void {
    if (node.linked) throw new Error("node already queued");
    node.linked = true;
    node.next = this.#head;
    node.prev = undefined;
    if (this.#head) this.#head.prev = node;
    else this.#tail = node;
    this.#head = node;
    this.#size++;
  }

  /** Inserts `node` before `ref` (a queued node), or at the tail when `ref` is undefined. */
  insertBefore(node: T, ref: T | undefined): void {
    if (ref === undefined) {
      this.push(node);
      return;
    }
    if (!ref.linked) throw new Error("reference node is not queued");
    if (ref.prev === undefined) {
      this.unshift(node);
      return;
    }
    if (node.linked) throw new Error("node already queued");
    node.linked = true;
    node.prev = ref.prev;
    node.next = ref;
    ref.prev.next = node;
    ref.prev = node;
    this.#size++;
  }

  shift(): T | undefined {
    const node = this.#head;
    if (node) this.remove(node);
    return node;
  }

  /** Returns false when the node was not in the list (already released or removed). */
  remove(node: T): boolean {
    if (!node.linked) return false;
    if (node.prev) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.#tail = node.prev;
    node.prev = undefined;
    node.next = undefined;
    node.linked = false;
    this.#size--;
    return true;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    let node = this.#head;
    while (node) {
      const next = node.next;
      yield node;
      node = next;
    }
  }
}
