import type { SignalHub, TargetSignals } from "../scaling/signals.js";
import type { Gate } from "./gate.js";

/** Every target's gate, in config order; the SignalHub that scaling publishers read. */
export class GateRegistry implements SignalHub {
  readonly #gates: Gate[] = [];
  readonly #byName = new Map<string, Gate>();
  readonly #listeners = new Set<(t: TargetSignals) => void>();

  add(gate: Gate): void {
    this.#gates.push(gate);
    this.#byName.set(gate.name, gate);
  }

  targets(): readonly Gate[] {
    return this.#gates;
  }

  get(name: string): Gate | undefined {
    return this.#byName.get(name);
  }

  onChange(listener: (t: TargetSignals) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called by gates on every change; listeners must be cheap (it runs on the warm path). */
  readonly notify = (gate: Gate): void => {
    for (const l of this.#listeners) l(gate);
  };
}
