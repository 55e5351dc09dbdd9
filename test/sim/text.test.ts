import { describe, expect, test } from "vitest";
import { complete, tokenText, words } from "../../src/sim/text.js";

describe("simulated text", () => {
  test("tokens are words; on the wire every token after the first carries its space", () => {
    const tokens = words("  the quick\n brown\tfox ");
    expect(tokens).toEqual(["the", "quick", "brown", "fox"]);
    expect(tokens.map((_, i) => tokenText(tokens, i)).join("")).toBe("the quick brown fox");
  });

  test("echo: the source's words, 'stop' when they run out, 'length' when cut at max tokens", () => {
    expect(complete("one two three", 5, "echo", 0)).toEqual({
      tokens: ["one", "two", "three"],
      finishReason: "stop",
    });
    expect(complete("one two three", 2, "echo", 0)).toEqual({
      tokens: ["one", "two"],
      finishReason: "length",
    });
    expect(complete("", 2, "echo", 0)).toEqual({ tokens: [], finishReason: "stop" });
  });

  test("seeded: exactly max tokens, the same for the same seed and source, different otherwise", () => {
    const a = complete("hello", 12, "seeded", 7);
    expect(a.tokens).toHaveLength(12);
    expect(a.finishReason).toBe("length");
    expect(complete("hello", 12, "seeded", 7)).toEqual(a);
    expect(complete("hello", 12, "seeded", 8).tokens).not.toEqual(a.tokens);
    expect(complete("hello!", 12, "seeded", 7).tokens).not.toEqual(a.tokens);
    // A shorter completion is a prefix of a longer one: max_tokens cuts, it does not reshuffle.
    expect(complete("hello", 5, "seeded", 7).tokens).toEqual(a.tokens.slice(0, 5));
  });
});
