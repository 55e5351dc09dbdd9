import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Engine, type EngineObserver, type SeqRequest } from "../../src/sim/engine.js";
import type { FinishReason } from "../../src/sim/text.js";

/** Every sink call and observer report, in order, as short strings. */
function recorder() {
  const events: string[] = [];
  const observer: EngineObserver = {
    scheduled: () => {},
    firstToken: (_s, prompt) => events.push(`first(${prompt})`),
    generated: () => {},
    finished: (reason) => events.push(`finished:${reason}`),
  };
  const request = (
    name: string,
    tokens: number,
    options: { stream?: boolean; finishReason?: FinishReason } = {},
  ): SeqRequest => ({
    promptTokens: tokens * 10,
    tokens: Array.from({ length: tokens }, (_, i) => `${name}${i}`),
    finishReason: options.finishReason ?? "length",
    stream: options.stream ?? true,
    sink: { emit: (from, to, finish) => events.push(`${name}[${from},${to})${finish ? `:${finish}` : ""}`) },
  });
  return { events, observer, request };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("Engine", () => {
  test("max-num-seqs: the excess waits in arrival order; ttft after scheduling, then one token per itl", async () => {
    const r = recorder();
    const engine = new Engine({ maxNumSeqs: 2, ttft: 100, itl: 10, observer: r.observer });
    engine.submit(r.request("a", 3));
    engine.submit(r.request("b", 2));
    engine.submit(r.request("c", 1));
    engine.submit(r.request("d", 1));
    expect([engine.running, engine.waiting]).toEqual([2, 2]);

    await vi.advanceTimersByTimeAsync(99);
    expect(r.events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(r.events.splice(0)).toEqual(["first(30)", "a[0,1)", "first(20)", "b[0,1)"]);

    await vi.advanceTimersByTimeAsync(10);
    // b finishes with its second token and c takes its slot at once; a goes on.
    expect(r.events.splice(0)).toEqual(["a[1,2)", "finished:length", "b[1,2):length"]);
    expect([engine.running, engine.waiting]).toEqual([2, 1]);

    await vi.advanceTimersByTimeAsync(10);
    expect(r.events.splice(0)).toEqual(["finished:length", "a[2,3):length"]);
    expect([engine.running, engine.waiting]).toEqual([2, 0]);

    // c was scheduled at 110 ms and d at 120 ms: each gets its first token ttft later.
    await vi.advanceTimersByTimeAsync(89);
    expect(r.events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(r.events.splice(0)).toEqual(["first(10)", "finished:length", "c[0,1):length"]);
    await vi.advanceTimersByTimeAsync(10);
    expect(r.events.splice(0)).toEqual(["first(10)", "finished:length", "d[0,1):length"]);
    expect([engine.running, engine.waiting]).toEqual([0, 0]);
    expect(vi.getTimerCount()).toBe(0);
  });

  test("a non-streaming sequence gets one emit, ttft + (n-1) * itl after scheduling", async () => {
    const r = recorder();
    const engine = new Engine({ maxNumSeqs: 1, ttft: 50, itl: 10, observer: r.observer });
    engine.submit(r.request("a", 4, { stream: false, finishReason: "stop" }));
    await vi.advanceTimersByTimeAsync(50);
    expect(r.events).toEqual(["first(40)"]);
    await vi.advanceTimersByTimeAsync(29);
    expect(r.events).toEqual(["first(40)"]);
    await vi.advanceTimersByTimeAsync(1);
    expect(r.events).toEqual(["first(40)", "finished:stop", "a[0,4):stop"]);
    expect(vi.getTimerCount()).toBe(0);
  });

  test("itl 0 streams the first token, then the rest at once; an empty completion still finishes", async () => {
    const r = recorder();
    const engine = new Engine({ maxNumSeqs: 4, ttft: 0, itl: 0, observer: r.observer });
    engine.submit(r.request("a", 3));
    engine.submit(r.request("e", 0, { finishReason: "stop" }));
    // ttft 0 is a setImmediate, not a 1 ms timeout.
    expect(r.events).toEqual([]);
    await vi.advanceTimersByTimeAsync(0);
    expect(r.events).toEqual([
      "first(30)",
      "finished:length",
      "a[0,3):length",
      "first(0)",
      "finished:stop",
      "e[0,0):stop",
    ]);
  });

  test("an aborted sequence frees its slot at once: the head of the queue takes it", async () => {
    const r = recorder();
    const engine = new Engine({ maxNumSeqs: 1, ttft: 1000, itl: 10, observer: r.observer });
    const a = engine.submit(r.request("a", 2));
    const b = engine.submit(r.request("b", 2));
    engine.submit(r.request("c", 1));
    await vi.advanceTimersByTimeAsync(500);
    b.abort(); // waiting: leaves the queue
    expect([engine.running, engine.waiting]).toEqual([1, 1]);
    a.abort(); // running: c takes the slot
    expect([engine.running, engine.waiting]).toEqual([1, 0]);
    a.abort(); // twice is a no-op
    expect(r.events).toEqual(["finished:abort", "finished:abort"]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(r.events.slice(2)).toEqual(["first(10)", "finished:length", "c[0,1):length"]);
    expect(vi.getTimerCount()).toBe(0);
  });

  test("close drops every sequence and leaves no timer", async () => {
    const r = recorder();
    const engine = new Engine({ maxNumSeqs: 2, ttft: 10, itl: 10, observer: r.observer });
    for (const name of ["a", "b", "c"]) engine.submit(r.request(name, 5));
    await vi.advanceTimersByTimeAsync(15);
    expect(vi.getTimerCount()).toBe(2);
    engine.close();
    expect(vi.getTimerCount()).toBe(0);
    expect([engine.running, engine.waiting]).toEqual([0, 0]);
    const before = r.events.length;
    await vi.advanceTimersByTimeAsync(1000);
    expect(r.events.length).toBe(before);
  });
});
