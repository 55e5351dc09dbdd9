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
const REQUEST_DROPPED = new Set([...HOP_BY_HOP, "host", "content-length", "expect", "forwarded"]);

/** Names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1), added to `into`. */
function addConnectionListed(value: string | string[] | undefined, into: Set<string> | undefined) {
  // The common values list no field: skip the split on the warm path.
  if (value === undefined || value === "keep-alive" || value === "close") return into;
  const text = Array.isArray(value) ? value.join(",") : value;
  let listed = into;
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
  /** The peer is a trusted proxy: its X-Forwarded-For chain is extended and its Proto/Host kept. */
  readonly trustedPeer: boolean;
  readonly proto: "http" | "https";
  readonly host: string | undefined;
  /**
   * Ask for an uncompressed answer: the request's early SSE headers already told the client the
   * stream is uncompressed (DESIGN.md step 7).
   */
  readonly identity: boolean;
  /**
   * Trace context of this attempt's span (flat [name, value, ...]): replaces the client's
   * traceparent/tracestate, so the upstream's spans join coldfront's. Undefined when tracing is
   * off: the client's pass through unchanged.
   */
  readonly trace?: readonly string[] | undefined;
}

/**
 * Upstream request headers as a flat [name, value, ...] list built from the raw headers, which
 * keeps repeated fields and costs one pass with no intermediate object.
 *
 * Every `Connection` line counts (a second line must not smuggle a field past the first). A
 * client's RFC 7239 `Forwarded` is dropped: coldfront speaks X-Forwarded-* only, and passing a
 * `for=` it cannot vouch for would let a client pose as another (README "Forwarding"). The
 * X-Forwarded-For chain a client sends is kept only from a trusted proxy; from anyone else it is
 * replaced by the peer's address.
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], facts: ForwardedFacts): string[] {
  const out: string[] = [];
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let listed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).length === 10 && (rawHeaders[i] as string).toLowerCase() === "connection") {
      listed = addConnectionListed(rawHeaders[i + 1], listed);
    }
  }
  const trusted = facts.trustedPeer;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (REQUEST_DROPPED.has(lower) || listed?.has(lower)) continue;
    if (lower.startsWith("x-forwarded-")) {
      if (!trusted) continue;
      const value = rawHeaders[i + 1] as string;
      if (lower === "x-forwarded-for") xff = xff === undefined ? value : `${xff}, ${value}`;
      else if (lower === "x-forwarded-proto") xfProto ??= value;
      else if (lower === "x-forwarded-host") xfHost ??= value;
      else out.push(name, value);
      continue;
    }
    if (facts.identity && lower === "accept-encoding") continue;
    if (facts.trace !== undefined && (lower === "traceparent" || lower === "tracestate")) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  if (facts.trace !== undefined) for (const h of facts.trace) out.push(h);
  const client = facts.remoteAddress ?? "unknown";
  out.push("x-forwarded-for", xff === undefined ? client : `${xff}, ${client}`);
  out.push("x-forwarded-proto", xfProto ?? facts.proto);
  const host = xfHost ?? facts.host;
  if (host !== undefined) out.push("x-forwarded-host", host);
  if (facts.identity) out.push("accept-encoding", "identity");
  return out;
}

/** Response headers to relay to the client: everything but hop-by-hop. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = addConnectionListed(headers.connection, undefined);
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
