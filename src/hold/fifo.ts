/**
 * An intrusive doubly-linked FIFO: O(1) push, shift, unshift (a replay sent back to the head)
 * and remove (a client that went away), with no per-operation allocation. Arrays make removal
 * O(n), which a flood of aborts at 10,000 held turns quadratic.
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
