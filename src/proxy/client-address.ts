/**
 * The client's address for per-client fairness and X-Forwarded-For (README "Who may wake a
 * model"): the socket's peer, unless that peer is one of `trustedProxies`, in which case the
 * rightmost X-Forwarded-For entry that is not itself a trusted proxy. An address a client writes
 * into X-Forwarded-For is believed only when a trusted proxy vouches for it, so a client cannot
 * buy itself a fresh share by inventing addresses.
 */
import { type BlockList, isIP } from "node:net";

/** ::ffff:10.0.0.1 as 10.0.0.1, so an IPv4 CIDR matches a dual-stack socket's peer. */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function isTrusted(trusted: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return trusted.check(address, family === 6 ? "ipv6" : "ipv4");
}

/** Whether the peer is a trusted proxy: its X-Forwarded-* headers are then kept and extended. */
export function peerTrusted(trusted: BlockList | undefined, remote: string | undefined): boolean {
  return trusted !== undefined && remote !== undefined && isTrusted(trusted, normalizeAddress(remote));
}

export function clientAddress(
  remote: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: BlockList | undefined,
): string {
  const peer = remote === undefined ? "unknown" : normalizeAddress(remote);
  if (trusted === undefined || forwardedFor === undefined || !isTrusted(trusted, peer)) return peer;
  const chain = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor).split(",");
  let leftmost = peer;
  for (let i = chain.length - 1; i >= 0; i--) {
    const hop = normalizeAddress((chain[i] as string).trim());
    if (isIP(hop) === 0) return leftmost; // garbage: stop at the last hop we could vouch for
    if (!isTrusted(trusted, hop)) return hop;
    leftmost = hop;
  }
  return leftmost;
}
