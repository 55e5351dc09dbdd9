import { type Demand, Listeners, type ReadinessSource } from "./source.js";

/** No readiness source: always ready, a plain proxy (DESIGN.md "Readiness sources"). */
export class AlwaysReady implements ReadinessSource {
  readonly kind = "none";
  readonly ready = true;
  readonly synced = true;
  readonly #listeners = new Listeners<boolean>();

  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  onChange(listener: (ready: boolean) => void): () => void {
    return this.#listeners.add(listener);
  }
  demand(_d: Demand): void {}
  status(): Record<string, unknown> {
    return {};
  }
}
