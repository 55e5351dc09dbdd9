/**
 * The release pacer's one sentence of contract (src/hold/release-pacer.ts): never more than
 * release.concurrency replays without a head, never more than release.maxInFlight unfinished;
 * the window starts at initialWindow, grows by one per replay taken up to the cap, halves on
 * overload (once per window, never below 1).
 */
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { type PacerOptions, ReleasePacer, type ReleaseSlot } from "../../src/hold/release-pacer.js";

const options = (o: Partial<PacerOptions> = {}): PacerOptions => ({
  concurrency: 8,
  initialWindow: 2,
  maxInFlight: 0,
  slotTimeout: 60_000,
  retryBackoff: 100,
  retryBackoffMax: 2000,
  ...o,
});

let pacers: ReleasePacer[] = [];
const pacer = (o: Partial<PacerOptions> = {}, pump = () => {}) => {
  const p = new ReleasePacer(options(o), pump);
  pacers.push(p);
  return p;
};

/** Starts replays while the pacer allows, at most `n`. */
function fill(p: ReleasePacer, n = 10_000): ReleaseSlot[] {
  const out: ReleaseSlot[] = [];
  while (out.length < n && p.canStart()) out.push(p.start());
  return out;
}

/** A replay that answered at once: head, taken, end. */
function answer(s: ReleaseSlot): void {
  s.head();
  s.taken();
  s.end();
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate"] });
});
afterEach(() => {
  for (const p of pacers) p.close();
  pacers = [];
  vi.useRealTimers();
});

describe("ReleasePacer", () => {
  test("the window starts at initialWindow and grows by one per replay taken, up to release.concurrency and never past it", () => {
    const p = pacer({ concurrency: 5, initialWindow: 2 });
    expect(p.window).toBe(2);
    let most = 0;
    for (let round = 0; round < 20; round++) {
      const slots = fill(p);
      most = Math.max(most, p.slots);
      for (const s of slots) answer(s);
    }
    expect(p.window).toBe(5);
    expect(most).toBe(5);
    // Taking many more does not move it.
    for (let i = 0; i < 50; i++) answer(p.start());
    expect(p.window).toBe(5);
  });

  test("an initialWindow above the cap starts at the cap: the cap is never a starting point to exceed", () => {
    const p = pacer({ concurrency: 3, initialWindow: 8 });
    expect(p.window).toBe(3);
    expect(fill(p)).toHaveLength(3);
    expect(p.canStart()).toBe(false);
  });

  test("with concurrency 1 replays go one at a time", () => {
    const p = pacer({ concurrency: 1, initialWindow: 8 });
    const a = fill(p);
    expect(a).toHaveLength(1);
    answer(a[0] as ReleaseSlot);
    expect(fill(p)).toHaveLength(1);
  });

  test("a slot frees at its head or after slotTimeout, and a slotTimeout counts as taken", () => {
    const p = pacer({ concurrency: 4, initialWindow: 1, slotTimeout: 500 });
    const [s] = fill(p);
    expect(p.canStart()).toBe(false);
    vi.advanceTimersByTime(499);
    expect(p.slots).toBe(1);
    vi.advanceTimersByTime(1);
    expect(p.slots).toBe(0);
    expect(p.window).toBe(2);
    // Still unfinished: it counts against maxInFlight until end().
    expect(p.inFlight).toBe(1);
    s?.end();
    expect(p.inFlight).toBe(0);
  });

  test("an overload halves the window once per window of replays, never below 1, and growth then slows to one per window", () => {
    const p = pacer({ concurrency: 64, initialWindow: 16 });
    const slots = fill(p);
    expect(slots).toHaveLength(16);
    // Eight of the sixteen answered overloaded: one decrease, not eight.
    for (const s of slots.slice(0, 8)) {
      s.overload();
      s.end();
    }
    expect(p.window).toBe(8);
    // Congestion avoidance: a window's worth (8) taken grows it by one, not by eight.
    for (const s of slots.slice(8)) answer(s);
    expect(p.window).toBe(9);
    for (let i = 0; i < 8; i++) answer(p.start());
    expect(p.window).toBe(9);
    answer(p.start());
    expect(p.window).toBe(10);
    // Overloads of replays started after the decrease halve again, down to 1 and no further.
    for (let i = 0; i < 10; i++) {
      const s = p.start();
      s.overload();
      s.end();
    }
    expect(p.window).toBe(1);
  });

  test("maxInFlight bounds unfinished replays even when their heads have come", () => {
    const p = pacer({ concurrency: 10, initialWindow: 10, maxInFlight: 3 });
    const slots = fill(p);
    expect(slots).toHaveLength(3);
    for (const s of slots) s.head();
    expect(p.slots).toBe(0);
    expect(p.canStart()).toBe(false);
    expect(p.atInFlightBound).toBe(true);
    slots[0]?.end();
    expect(p.canStart()).toBe(true);
  });

  test("end() is idempotent and frees a slot whose head never came", () => {
    const p = pacer({ concurrency: 2, initialWindow: 2 });
    const [a] = fill(p);
    a?.end();
    a?.end();
    a?.head();
    expect(p.slots).toBe(1);
    expect(p.inFlight).toBe(1);
  });

  test("a cold answer starts the window small again; reset() after a cold period does too", () => {
    const p = pacer({ concurrency: 8, initialWindow: 2 });
    for (let i = 0; i < 10; i++) answer(p.start());
    expect(p.window).toBe(8);
    p.coldAnswer();
    expect(p.window).toBe(2);
    expect(p.waitMs()).toBeGreaterThan(0);
    for (let i = 0; i < 10; i++) answer(p.start());
    p.reset();
    expect(p.window).toBe(2);
    expect(p.waitMs()).toBe(0);
  });

  test("a backoff brings the release back by itself when it ends, and grows once per round", async () => {
    vi.useRealTimers();
    let pumped!: () => void;
    const ended = new Promise<void>((r) => {
      pumped = r;
    });
    const p = pacer({ retryBackoff: 20, retryBackoffMax: 80 }, () => pumped());
    p.backOff();
    p.backOff();
    expect(p.backoffMs).toBe(20);
    expect(p.backingOff).toBe(true);
    await ended;
    p.settleIfIdle();
    expect(p.backingOff).toBe(false);
    p.backOff();
    expect(p.backoffMs).toBe(40);
  });

  test("a freed slot pumps after the current call stack, never inside it", async () => {
    let inside = false;
    let pumpedInside = false;
    const p = pacer({ concurrency: 4, initialWindow: 4 }, () => {
      if (inside) pumpedInside = true;
    });
    const slots = fill(p);
    inside = true;
    for (const s of slots) s.head();
    inside = false;
    expect(pumpedInside).toBe(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(pumpedInside).toBe(false);
  });

  test("concurrency 0 is no cap: the window alone paces", () => {
    const p = pacer({ concurrency: 0, initialWindow: 4 });
    expect(fill(p)).toHaveLength(4);
    for (let i = 0; i < 100; i++) answer(p.start());
    expect(p.window).toBeGreaterThan(100);
  });
});
