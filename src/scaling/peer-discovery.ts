/**
 * Finding the other coldfront replicas whose held counts KEDA must see summed (DESIGN.md "Scaling
 * signals"): a fixed list of base URLs, or the ready endpoints of coldfront's own headless
 * Service, read from its EndpointSlices. Each discovery answers the full current list of peer
 * admin base URLs (`http://10.0.0.7:9090`), this replica excluded.
 */
import { networkInterfaces } from "node:os";
import { DiscoveryV1Api, type KubeConfig, type V1EndpointSlice } from "@kubernetes/client-node";
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
}

/**
 * Lists the EndpointSlices labelled `kubernetes.io/service-name=<service>` and answers their
 * ready endpoints. `resourceVersion: "0"` lets the API server answer from its watch cache, since
 * this runs every few seconds on every replica.
 */
export async function endpointSliceDiscovery(o: EndpointSliceDiscoveryOptions): Promise<PeerDiscovery> {
  const api = o.kubeConfig.makeApiClient(DiscoveryV1Api);
  const self = o.self ?? selfAddresses();
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
      return peersFromSlices(list.items, o.adminPort, self);
    },
  };
}

/**
 * The admin base URLs of the ready endpoints in `slices`, without `self`, each once. The port is
 * the slice's port named "admin", else `adminPort`. Kubernetes: a nil `ready` means ready.
 */
export function peersFromSlices(
  slices: readonly V1EndpointSlice[],
  adminPort: number,
  self: ReadonlySet<string>,
): string[] {
  const urls = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType === "FQDN") continue;
    const port = slice.ports?.find((p) => p.name === "admin")?.port ?? adminPort;
    for (const ep of slice.endpoints ?? []) {
      if (ep.conditions?.ready === false) continue;
      for (const address of ep.addresses) {
        if (self.has(address)) continue;
        urls.add(`http://${address.includes(":") ? `[${address}]` : address}:${port}`);
      }
    }
  }
  return [...urls].sort();
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
