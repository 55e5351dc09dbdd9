import { describe, expect, test } from "vitest";
import { ColdSignals } from "../../src/proxy/cold-signals.js";

function isCold(s: ColdSignals, status: number, headers: Record<string, string>, body: string): boolean {
  const v = s.head(status, headers);
  if (v === "cold") return true;
  if (v === "need-body") return s.body(status, headers, body);
  return false;
}

describe("default cold signals (DESIGN.md step 6)", () => {
  const s = new ColdSignals("default");

  test("llm-d router drop header", () => {
    expect(s.head(503, { "x-llm-d-request-dropped-reason": "rejected-no-endpoints" })).toBe("cold");
    expect(isCold(s, 503, { "x-llm-d-request-dropped-reason": "rejected-rate-limit" }, "")).toBe(false);
  });

  test("Inference Extension, production-stack router, Envoy bodies", () => {
    expect(isCold(s, 503, {}, '{"error":"failed to find endpoint candidates"}')).toBe(true);
    expect(isCold(s, 503, {}, "Service temporarily unavailable")).toBe(true);
    expect(isCold(s, 503, {}, "no healthy upstream")).toBe(true);
  });

  test("other answers are the upstream's own and pass through", () => {
    expect(s.head(200, {})).toBe("not-cold");
    expect(s.head(500, {})).toBe("not-cold");
    expect(isCold(s, 503, {}, "model overloaded")).toBe(false);
    expect(isCold(s, 502, {}, "no healthy upstream")).toBe(false);
  });
});

describe("configured cold signals", () => {
  test("all given fields of one signal must fit", () => {
    const s = new ColdSignals([{ status: 502, header: "x-gw: cold" }, { bodyContains: "warming up" }]);
    expect(s.head(502, { "x-gw": "Cold" })).toBe("cold");
    expect(s.head(503, { "x-gw": "cold" })).toBe("need-body");
    expect(isCold(s, 429, {}, "model is warming up")).toBe(true);
    expect(isCold(s, 502, {}, "bad gateway")).toBe(false);
  });

  test("none disables them", () => {
    const s = new ColdSignals("none");
    expect(s.head(503, { "x-llm-d-request-dropped-reason": "rejected-no-endpoints" })).toBe("not-cold");
  });
});
