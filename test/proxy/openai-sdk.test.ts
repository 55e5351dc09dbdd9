/** The real openai SDK as the client, as users run it (DESIGN.md "Errors", issue 2 "Show"). */
import OpenAI from "openai";
import { describe, expect, test } from "vitest";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";
import { openaiChatHandler } from "../helpers/upstream.js";

const defer = useCleanups();

async function cold(limits: Record<string, unknown> = {}) {
  const t = await startColdTarget(defer, {
    handler: openaiChatHandler,
    extra: { limits },
    target: { match: { models: ["llama"] } },
  });
  const client = new OpenAI({ baseURL: `${t.app.clientUrl}/v1`, apiKey: "sk-test", maxRetries: 0 });
  return { ...t, client };
}

describe("openai SDK through coldfront", () => {
  test("a cold burst of plain and streaming calls all succeed once the model is up", async () => {
    const { up, app, client } = await cold();
    const plain = Array.from({ length: 5 }, (_, i) =>
      client.chat.completions.create({ model: "llama", messages: [{ role: "user", content: `hello ${i}` }] }),
    );
    const streams = Array.from({ length: 5 }, async (_, i) => {
      const stream = await client.chat.completions.create({
        model: "llama",
        stream: true,
        messages: [{ role: "user", content: `stream ${i}` }],
      });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      return text;
    });
    await waitFor(() => app.hub.get("llama")?.pending === 10, "10 held");
    await up.start();
    const answers = await Promise.all(plain);
    for (const [i, a] of answers.entries()) expect(a.choices[0]?.message.content).toBe(`echo: hello ${i}`);
    const texts = await Promise.all(streams);
    for (const [i, t] of texts.entries()) expect(t.trim()).toBe(`echo: stream ${i}`);
    expect(up.seen).toHaveLength(10);
  });

  test("a cold start past the hold timeout surfaces as a 503 cold_start_timeout APIError", async () => {
    const { client } = await cold({ holdTimeout: "300ms" });
    const err = await client.chat.completions
      .create({ model: "llama", messages: [{ role: "user", content: "hi" }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const apiErr = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiErr.status).toBe(503);
    expect(apiErr.type).toBe("cold_start_timeout");
    expect(apiErr.code).toBe("cold_start_timeout");
    expect(apiErr.headers?.get("x-should-retry")).toBe("true");
  });

  test("GET /v1/models is answered from config at zero, waking nothing", async () => {
    const { up, app, client } = await cold();
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["llama"]);
    expect(app.hub.get("llama")?.pending).toBe(0);
    expect(up.seen).toHaveLength(0);
  });
});
