/**
 * Finding the other coldfront replicas whose held counts KEDA must see summed (DESIGN.md "Scaling
 * signals"): a fixed list of base URLs, or the ready endpoints of coldfront's own headless
 * Service, read from its EndpointSlices. Each discovery answers the full current list of peer
 * admin base URLs (`http://10.0.0.7:9090`), one per pod, this replica excluded.
 */
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import {
  DiscoveryV1Api,
  type KubeConfig,
  type V1Endpoint,
  type V1EndpointSlice,
} from "@kubernetes/client-node";
import { abortable } from "../readiness/informer.js";

export interface PeerDiscovery {
  /** The current peers' admin base URLs; rejects when the list cannot be read (keep the last). */
  discover(signal: AbortSignal): Promise<string[]>;
  /** What is discovered, for logs. */
  readonly describe: string;
}

/** A fixed list of peer base URLs (tests, or replicas outside Kubernetes). */
export function staticDiscovery(urls: readonly string[]): PeerDiscovery {
  const list = [...new Set(urls.map((u) => u.replace(/\/+$/, "")))];
  return {
    describe: `static peers ${list.join(", ")}`,
    discover: async () => list,
  };
}

export interface EndpointSliceDiscoveryOptions {
  readonly namespace: string;
  readonly service: string;
  readonly kubeConfig: KubeConfig;
  /** Used when the slice has no port named "admin". */
  readonly adminPort: number;
  /** This replica's own addresses, left out of the list; by default selfAddresses(). */
  readonly self?: ReadonlySet<string>;
  /** The address family asked of a dual-stack peer; by default ownFamily(). */
  readonly family?: AddressFamily;
}

/**
 * Lists the EndpointSlices labelled `kubernetes.io/service-name=<service>` and answers their
 * ready endpoints. `resourceVersion: "0"` lets the API server answer from its watch cache, since
 * this runs every few seconds on every replica.
 */
export async function endpointSliceDiscovery(o: EndpointSliceDiscoveryOptions): Promise<PeerDiscovery> {
  const api = o.kubeConfig.makeApiClient(DiscoveryV1Api);
  const self = o.self ?? selfAddresses();
  const family = o.family ?? ownFamily();
  return {
    describe: `EndpointSlices of service ${o.namespace}/${o.service}`,
    async discover(signal) {
      const list = await api.listNamespacedEndpointSlice(
        {
          namespace: o.namespace,
          labelSelector: `kubernetes.io/service-name=${o.service}`,
          resourceVersion: "0",
        },
        // The generated client has no timeout of its own; a hung API server must not hang discovery.
        abortable(signal),
      );
      return peersFromSlices(list.items, o.adminPort, self, family);
    },
  };
}

export type AddressFamily = "IPv4" | "IPv6";

/** One way to reach a peer: an address of one of its endpoints, with its slice's admin port. */
interface Candidate {
  readonly address: string;
  readonly family: AddressFamily;
  readonly port: number;
  /** The slice names a port "admin" (else the configured admin port is a guess). */
  readonly named: boolean;
}

/**
 * The admin base URLs of the ready peers in `slices`, one per pod, this replica left out.
 *
 * A pod appears once per slice that lists it: in an IPv4 and an IPv6 slice on a dual-stack
 * cluster, in several slices while the controller moves endpoints around. Each pod is counted
 * once (else KEDA sees its demand twice, DESIGN.md "Scaling signals"): endpoints are grouped by
 * the pod they point at (`targetRef` uid, else its kind/namespace/name); an endpoint without a
 * targetRef is keyed by its address. Of a pod's ready addresses, one is taken: of `family` (the
 * family of coldfront's own address) when it has one, then on a port named "admin", then the
 * lowest, so the choice is stable from poll to poll. A pod any of whose addresses is in `self`
 * is this replica, ready or not. The port is the slice's port named "admin", else `adminPort`.
 * Only an endpoint's first address is used: the EndpointSlice API lets consumers do so.
 * Kubernetes: a nil `ready` means ready.
 */
export function peersFromSlices(
  slices: readonly V1EndpointSlice[],
  adminPort: number,
  self: ReadonlySet<string>,
  family: AddressFamily = "IPv4",
): string[] {
  const pods = new Map<string, Candidate[]>();
  const ourselves = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType !== "IPv4" && slice.addressType !== "IPv6") continue; // FQDN: no pod IP
    const admin = slice.ports?.find((p) => p.name === "admin")?.port;
    for (const ep of slice.endpoints ?? []) {
      const address = ep.addresses[0];
      if (address === undefined) continue;
      const key = podKey(ep, address);
      if (ep.addresses.some((a) => self.has(a))) ourselves.add(key);
      if (ep.conditions?.ready === false) continue;
      const list = pods.get(key) ?? [];
      pods.set(key, list);
      list.push({ address, family: slice.addressType, port: admin ?? adminPort, named: admin !== undefined });
    }
  }
  const urls = new Set<string>();
  for (const [key, candidates] of pods) {
    if (ourselves.has(key)) continue;
    const best = candidates.sort((a, b) => rank(a, family) - rank(b, family) || compare(a, b))[0];
    if (best) urls.add(`http://${best.family === "IPv6" ? `[${best.address}]` : best.address}:${best.port}`);
  }
  return [...urls].sort();
}

/** The pod (or other object) an endpoint points at; without a targetRef, its address alone. */
function podKey(ep: V1Endpoint, address: string): string {
  const ref = ep.targetRef;
  if (ref?.uid) return `uid:${ref.uid}`;
  if (ref?.name) return `ref:${ref.kind ?? "Pod"}/${ref.namespace ?? ""}/${ref.name}`;
  return `address:${address}`;
}

function rank(c: Candidate, family: AddressFamily): number {
  return (c.family === family ? 0 : 2) + (c.named ? 0 : 1);
}

function compare(a: Candidate, b: Candidate): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port;
}

/**
 * This replica's own addresses: POD_IP / POD_IPS (the downward API, set by deploy/), else every
 * address of this machine's interfaces.
 */
export function selfAddresses(env: NodeJS.ProcessEnv = process.env): ReadonlySet<string> {
  const fromEnv = [env.POD_IP, ...(env.POD_IPS ?? "").split(",")]
    .map((s) => s?.trim())
    .filter((s): s is string => !!s);
  if (fromEnv.length > 0) return new Set(fromEnv);
  const all = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const nic of list ?? []) all.add(nic.address);
  }
  return all;
}

/**
 * The family of this replica's own address: POD_IP's (the pod's primary IP, whose family is the
 * cluster's primary one), else the first of POD_IPS; IPv4 when neither is set. Peers are reached
 * in that family, which the pod network certainly routes.
 */
export function ownFamily(env: NodeJS.ProcessEnv = process.env): AddressFamily {
  const own = [env.POD_IP, ...(env.POD_IPS ?? "").split(",")].map((s) => s?.trim()).find((s) => !!s);
  return own !== undefined && isIP(own) === 6 ? "IPv6" : "IPv4";
}
