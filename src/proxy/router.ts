/**
 * Routes a request to the first target whose `match` fits (DESIGN.md step 2): within a key any
 * listed value fits, across keys all given keys must fit, and no `match` takes everything.
 */
import type { TargetConfig } from "../config/schema.js";
import { ColdfrontError } from "../errors.js";

interface Rule<T> {
  readonly target: T;
  readonly hosts: ReadonlySet<string> | undefined;
  readonly pathPrefixes: readonly string[] | undefined;
  readonly models: ReadonlySet<string> | undefined;
}

/** What routing may need to know about one request; the body is parsed only if a rule asks. */
export interface RouteFacts {
  readonly host: string | undefined;
  readonly url: string;
  /** The parsed JSON body; undefined when absent or not JSON. */
  json(): unknown;
  readonly hasBody: boolean;
}

export class Router<T> {
  readonly #rules: Rule<T>[];
  /** Every model any target lists, in config order, for GET /v1/models. */
  readonly models: readonly string[];

  constructor(targets: readonly { config: TargetConfig; target: T }[]) {
    this.#rules = targets.map(({ config, target }) => ({
      target,
      hosts: config.match?.hosts ? new Set(config.match.hosts.map((h) => h.toLowerCase())) : undefined,
      pathPrefixes: config.match?.pathPrefixes,
      models: config.match?.models ? new Set(config.match.models) : undefined,
    }));
    this.models = [...new Set(targets.flatMap((t) => t.config.match?.models ?? []))];
  }

  /** The target, or a no_route / invalid_request error. */
  route(facts: RouteFacts): T | ColdfrontError {
    let host: string | undefined | null = null;
    let path: string | undefined;
    for (const rule of this.#rules) {
      if (rule.hosts) {
        if (host === null) host = hostname(facts.host);
        if (host === undefined || !rule.hosts.has(host)) continue;
      }
      if (rule.pathPrefixes) {
        path ??= pathOf(facts.url);
        const p = path;
        if (!rule.pathPrefixes.some((prefix) => p.startsWith(prefix))) continue;
      }
      if (rule.models) {
        if (!facts.hasBody) continue;
        const json = facts.json();
        if (typeof json !== "object" || json === null) {
          return new ColdfrontError(
            "invalid_request",
            "the request body must be a JSON object with a 'model' field",
          );
        }
        const model = (json as { model?: unknown }).model;
        if (typeof model !== "string" || !rule.models.has(model)) continue;
      }
      return rule.target;
    }
    return new ColdfrontError(
      "no_route",
      "no target serves this request (check the model name, host or path)",
    );
  }
}

/** Host header without port, lowercased; IPv6 literals keep their brackets. */
function hostname(host: string | undefined): string | undefined {
  if (!host) return undefined;
  const h = host.toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end < 0 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(":");
  return colon < 0 ? h : h.slice(0, colon);
}

function pathOf(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : url.slice(0, q);
}
