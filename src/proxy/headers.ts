/**
 * Header handling for forwarding (DESIGN.md "Forwarding drops hop-by-hop headers, keeps
 * everything else (Authorization included), and adds X-Forwarded-For/Proto/Host").
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones proxies still strip. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Request-side fields that undici must compute itself: `host` is the upstream's (the original
 * goes in X-Forwarded-Host), `content-length` follows the buffered body, `expect` would make
 * undici wait for a 100 that a replay never needs.
 */
const REQUEST_DROPPED = new Set([...HOP_BY_HOP, "host", "content-length", "expect"]);

/** Names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(value: string | string[] | undefined): Set<string> | undefined {
  // The common values list no field: skip the split on the warm path.
  if (value === undefined || value === "keep-alive" || value === "close") return undefined;
  const text = Array.isArray(value) ? value.join(",") : value;
  let listed: Set<string> | undefined;
  for (const part of text.split(",")) {
    const name = part.trim().toLowerCase();
    if (!name || name === "close" || name === "keep-alive") continue;
    listed ??= new Set();
    listed.add(name);
  }
  return listed;
}

export interface ForwardedFacts {
  readonly remoteAddress: string | undefined;
  readonly proto: "http" | "https";
  readonly host: string | undefined;
}

/**
 * Upstream request headers as a flat [name, value, ...] list built from the raw headers, which
 * keeps repeated fields and costs one pass with no intermediate object.
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], facts: ForwardedFacts): string[] {
  const out: string[] = [];
  let xff: string | undefined;
  let listed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).length === 10 && (rawHeaders[i] as string).toLowerCase() === "connection") {
      listed = connectionListed(rawHeaders[i + 1]);
    }
  }
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (REQUEST_DROPPED.has(lower) || listed?.has(lower)) continue;
    if (lower === "x-forwarded-for") {
      xff = xff === undefined ? (rawHeaders[i + 1] as string) : `${xff}, ${rawHeaders[i + 1]}`;
      continue;
    }
    if (lower === "x-forwarded-proto" || lower === "x-forwarded-host") continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  const client = facts.remoteAddress ?? "unknown";
  out.push("x-forwarded-for", xff === undefined ? client : `${xff}, ${client}`);
  out.push("x-forwarded-proto", facts.proto);
  if (facts.host !== undefined) out.push("x-forwarded-host", facts.host);
  return out;
}

/** Response headers to relay to the client: everything but hop-by-hop. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionListed(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = headers[name];
  }
  return out;
}

/** First value of a header from Node's parsed headers. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}
