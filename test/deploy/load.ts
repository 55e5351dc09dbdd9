/**
 * Requests a test sends and later cancels: each is a real fetch with its own AbortController, so
 * that held or in-flight requests can be left hanging while a test reads the signals, then
 * dropped at the end (coldfront sees the client go).
 */
export interface Load {
  /** Aborts every request and waits for all of them to settle. */
  cancel(): Promise<void>;
}

export function sendRequests(url: string, n: number, body: (i: number) => object): Load {
  const controllers: AbortController[] = [];
  const settled: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const ac = new AbortController();
    controllers.push(ac);
    settled.push(
      fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body(i)),
        signal: ac.signal,
      })
        // Read the body too, so an answer that does come is consumed; abort ends either.
        .then((res) => res.arrayBuffer())
        .catch(() => undefined),
    );
  }
  return {
    async cancel() {
      for (const ac of controllers) ac.abort();
      await Promise.allSettled(settled);
    },
  };
}

/** A chat completion request; `model` matters only where the target routes by model. */
export function chat(model: string, extra: object = {}): (i: number) => object {
  return (i) => ({ model, messages: [{ role: "user", content: `request ${i}` }], ...extra });
}
