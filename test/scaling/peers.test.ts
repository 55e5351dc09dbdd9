import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { V1Endpoint, V1EndpointSlice } from "@kubernetes/client-node";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { ownFamily, peersFromSlices, selfAddresses } from "../../src/scaling/peer-discovery.js";
import { type ClusterDemandOptions, createClusterDemand } from "../../src/scaling/peers.js";
import { testLogger, useCleanups, waitFor } from "../helpers/app.js";
import { FakeKube, kubeConfigFor } from "../helpers/fake-kube.js";
import { FakeHub, PeerAdmin } from "../helpers/keda-client.js";

const cleanup = useCleanups();

/** A logger whose records the test can read (peers log, rather than throw, what goes wrong). */
function capturingLogger() {
  const records: { level: number; msg: string; peer?: string }[] = [];
  // pino through fastify, as the app gets it (pino itself is fastify's dependency, not ours).
  const log = Fastify({
    logger: { level: "debug", stream: { write: (line: string) => records.push(JSON.parse(line)) } },
  }).log;
  return { log, records };
}

function cluster(o: Partial<ClusterDemandOptions> & Pick<ClusterDemandOptions, "hub">) {
  const c = createClusterDemand({ interval: 30, staleAfter: 30_000, adminPort: 0, log: testLogger(), ...o });
  cleanup(() => c.stop());
  return c;
}

async function peer(hub: FakeHub): Promise<PeerAdmin> {
  const p = await PeerAdmin.start(hub);
  cleanup(() => p.close());
  return p;
}

describe("createClusterDemand", () => {
  it("without peers is this replica's own counts, and 0 for an unknown target", async () => {
    const hub = new FakeHub("llama");
    const c = cluster({ hub });
    expect(c.totals("llama")).toEqual({ pending: 0, inFlight: 0 });
    hub.t("llama").pending = 2;
    hub.t("llama").inFlight = 1;
    expect(c.totals("llama")).toEqual({ pending: 2, inFlight: 1 });
    expect(c.totals("nope")).toEqual({ pending: 0, inFlight: 0 });
    await c.stop();
  });

  it("adds each peer's local counts, per target, asking with scope=local", async () => {
    const hub = new FakeHub("llama", "qwen");
    const hubB = new FakeHub("llama", "qwen");
    const hubC = new FakeHub("llama", "qwen");
    const [b, c] = [await peer(hubB), await peer(hubC)];
    hub.t("llama").pending = 1;
    hubB.t("llama").pending = 2;
    hubB.t("qwen").inFlight = 5;
    hubC.t("llama").pending = 4;
    hubC.t("llama").inFlight = 1;
    const demand = cluster({ hub, staticPeers: [b.url, `${c.url}/`] });
    await waitFor(() => demand.totals("llama").pending === 7, "llama's sum over three replicas");
    expect(demand.totals("llama")).toEqual({ pending: 7, inFlight: 1 });
    await waitFor(() => demand.totals("qwen").inFlight === 5, "qwen's sum");
    expect(demand.totals("qwen")).toEqual({ pending: 0, inFlight: 5 });
    // PeerAdmin answers 400 without scope=local, so these counts prove the query was right.
    expect(b.asked.get("llama")).toBeGreaterThan(0);
    expect(c.asked.get("qwen")).toBeGreaterThan(0);

    // Later changes at a peer are seen on a later poll.
    hubC.t("llama").pending = 0;
    await waitFor(() => demand.totals("llama").pending === 3, "C's fall");
  });

  it("counts nothing from a peer that does not know the target (another config, mid-rollout)", async () => {
    const hub = new FakeHub("llama", "qwen");
    const hubB = new FakeHub("llama");
    hubB.t("llama").pending = 2;
    const b = await peer(hubB);
    const demand = cluster({ hub, staticPeers: [b.url] });
    await waitFor(() => demand.totals("llama").pending === 2, "B's llama");
    expect(demand.totals("qwen")).toEqual({ pending: 0, inFlight: 0 });
  });

  it("keeps a dead peer's last value until staleAfter, then drops it; totals never throws", async () => {
    const hub = new FakeHub("llama");
    const hubB = new FakeHub("llama");
    hubB.t("llama").pending = 4;
    const b = await peer(hubB);
    const { log, records } = capturingLogger();
    const staleAfter = 1500;
    const demand = cluster({ hub, staticPeers: [b.url], staleAfter, log });
    await waitFor(() => demand.totals("llama").pending === 4, "B's count");

    await b.close();
    const diedAt = performance.now();
    await waitFor(
      () => records.some((r) => r.msg.startsWith("peer unreachable") && r.peer === b.url),
      "a failed poll of B",
    );
    // Polls have failed, yet within staleAfter B still counts with its last value, not as 0.
    const kept = demand.totals("llama").pending;
    const within = performance.now() - diedAt < staleAfter;
    if (within) expect(kept).toBe(4);

    let calls = 0;
    await waitFor(() => {
      calls++;
      return demand.totals("llama").pending === 0;
    }, "B's value to go stale");
    expect(calls).toBeGreaterThan(1);
    // Dropped no earlier than staleAfter after its last answer (which came before it died).
    expect(performance.now() - diedAt).toBeGreaterThanOrEqual(staleAfter - 250);
    // The cache is pruned (and the drop logged) by the poll after totals() stopped counting it.
    await waitFor(() => records.some((r) => r.msg.includes("past staleAfter")), "the drop to be logged");
    // The local count still counts.
    hub.t("llama").pending = 1;
    expect(demand.totals("llama")).toEqual({ pending: 1, inFlight: 0 });
  });

  it("treats an error status or a malformed body like an unreachable peer (last value kept)", async () => {
    const hub = new FakeHub("llama");
    let mode: "ok" | "500" | "garbage" = "ok";
    const server = createServer((_req, res) => {
      if (mode === "500") res.writeHead(500).end();
      else if (mode === "garbage") res.writeHead(200).end('{"pending":"lots"}');
      else res.writeHead(200).end('{"target":"llama","pending":3,"inFlight":0,"ready":false}');
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanup(() => new Promise((r) => server.close(r)));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { log, records } = capturingLogger();
    const demand = cluster({ hub, staticPeers: [url], log });
    await waitFor(() => demand.totals("llama").pending === 3, "the peer's count");
    for (const m of ["500", "garbage"] as const) {
      mode = m;
      const n = records.filter((r) => r.msg.startsWith("peer unreachable")).length;
      await waitFor(
        () => records.filter((r) => r.msg.startsWith("peer unreachable")).length > n,
        `a failed poll (${m})`,
      );
      expect(demand.totals("llama").pending).toBe(3);
      mode = "ok";
      await waitFor(() => records.some((r) => r.msg === "peer reachable again"), "recovery");
      records.length = 0;
    }
  });

  it("never overlaps its polls and bounds each one with a timeout; stop() is prompt", async () => {
    const hub = new FakeHub("llama");
    let open = 0;
    let maxOpen = 0;
    let requests = 0;
    // A peer that never answers: each request hangs until the client gives up.
    const server = createServer((req) => {
      requests++;
      open++;
      maxOpen = Math.max(maxOpen, open);
      req.socket.once("close", () => open--);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanup(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    hub.t("llama").pending = 1;
    const demand = createClusterDemand({
      hub,
      staticPeers: [url],
      interval: 10,
      timeout: 150,
      staleAfter: 30_000,
      adminPort: 0,
      log: testLogger(),
    });
    // Several timeouts' worth of ticks.
    await waitFor(() => requests >= 3, "the poll to time out and run again");
    expect(maxOpen).toBe(1);
    // totals() answers at once from the cache while polls hang.
    expect(demand.totals("llama")).toEqual({ pending: 1, inFlight: 0 });
    const started = performance.now();
    await demand.stop();
    expect(performance.now() - started).toBeLessThan(1000);
    const after = requests;
    await new Promise((r) => setTimeout(r, 100));
    expect(requests).toBe(after);
    expect(demand.totals("llama")).toEqual({ pending: 1, inFlight: 0 });
  });

  it("stops polling and forgets peers on stop()", async () => {
    const hub = new FakeHub("llama");
    const hubB = new FakeHub("llama");
    hubB.t("llama").pending = 2;
    const b = await peer(hubB);
    const demand = cluster({ hub, staticPeers: [b.url] });
    await waitFor(() => demand.totals("llama").pending === 2, "B's count");
    await demand.stop();
    const asked = b.asked.get("llama");
    await new Promise((r) => setTimeout(r, 100));
    expect(b.asked.get("llama")).toBe(asked);
    expect(demand.totals("llama")).toEqual({ pending: 0, inFlight: 0 });
  });
});

/** The fake API server (test/helpers/fake-kube.ts), stopped after the test. */
async function sliceApi(): Promise<FakeKube> {
  const fake = await FakeKube.start();
  cleanup(() => fake.close());
  return fake;
}

/** One slice of coldfront's own Service, its admin port `port`, endpoints at `addresses`. */
function peerSlice(service: string, port: number, addresses: string[]): V1EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    addressType: "IPv4",
    metadata: {
      name: `${service}-${port}`,
      namespace: "serving",
      labels: { "kubernetes.io/service-name": service },
    },
    ports: [{ name: "admin", port, protocol: "TCP" }],
    // Each a pod of its own: here several pods share 127.0.0.1 and differ by port.
    endpoints: addresses.map((a) => ({
      addresses: [a],
      conditions: { ready: true },
      targetRef: { kind: "Pod", namespace: "serving", name: `pod-${port}-${a}` },
    })),
  };
}

/** Sets POD_IP for one test, as the downward API does; restored after it. */
function podIp(value: string): void {
  const before = process.env.POD_IP;
  process.env.POD_IP = value;
  cleanup(() => {
    if (before === undefined) delete process.env.POD_IP;
    else process.env.POD_IP = value === process.env.POD_IP ? before : process.env.POD_IP;
  });
}

/**
 * A peer's admin port on both loopbacks (127.0.0.1 and ::1 through one dual-stack socket), as a
 * dual-stack pod is reachable on both of its addresses; counts the polls by the family they came in.
 */
async function dualStackPeer(
  pending: number,
): Promise<{ port: number; polls: { IPv4: number; IPv6: number } }> {
  const polls = { IPv4: 0, IPv6: 0 };
  const server = createServer((req, res) => {
    const local = req.socket.localAddress ?? "";
    polls[local.startsWith("::ffff:") || !local.includes(":") ? "IPv4" : "IPv6"]++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ target: "llama", pending, inFlight: 0, ready: false }));
  });
  await new Promise<void>((r) => server.listen({ port: 0, host: "::", ipv6Only: false }, r));
  cleanup(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { port: (server.address() as AddressInfo).port, polls };
}

/** One pod of coldfront's own Service, as the EndpointSlice controller lists it per family. */
function dualStackSlices(
  service: string,
  port: number,
  pods: { uid: string; v4: string; v6: string }[],
): V1EndpointSlice[] {
  return (["IPv4", "IPv6"] as const).map((family) => ({
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    addressType: family,
    metadata: {
      name: `${service}-${port}-${family.toLowerCase()}`,
      namespace: "serving",
      labels: { "kubernetes.io/service-name": service },
    },
    ports: [{ name: "admin", port, protocol: "TCP" }],
    endpoints: pods.map((p) => ({
      addresses: [family === "IPv4" ? p.v4 : p.v6],
      conditions: { ready: true },
      targetRef: { kind: "Pod", namespace: "serving", name: p.uid, uid: p.uid },
    })),
  }));
}

describe("EndpointSlice discovery", () => {
  it("counts each pod of a dual-stack Service once, on the family of coldfront's own address", async () => {
    const [b, c] = [await dualStackPeer(2), await dualStackPeer(3)];
    const api = await sliceApi();
    // This replica is in the first pair of slices too, on addresses nothing listens on.
    for (const s of [
      ...dualStackSlices("coldfront-peers", b.port, [
        { uid: "pod-b", v4: "127.0.0.1", v6: "::1" },
        { uid: "pod-self", v4: "10.255.0.1", v6: "fd00::ff" },
      ]),
      ...dualStackSlices("coldfront-peers", c.port, [{ uid: "pod-c", v4: "127.0.0.1", v6: "::1" }]),
    ])
      api.apply(s);

    for (const [own, family] of [
      ["10.255.0.1", "IPv4"],
      ["fd00::ff", "IPv6"],
    ] as const) {
      podIp(own);
      const hub = new FakeHub("llama");
      hub.t("llama").pending = 1;
      const { log, records } = capturingLogger();
      const demand = cluster({
        hub,
        peers: { namespace: "serving", service: "coldfront-peers" },
        kubeConfig: kubeConfigFor(api),
        discoveryInterval: 30,
        adminPort: 1,
        log,
      });
      const before = { b: { ...b.polls }, c: { ...c.polls } };
      await waitFor(() => b.polls[family] - before.b[family] >= 3, `polls of B over ${family}`);
      await waitFor(() => c.polls[family] - before.c[family] >= 3, `polls of C over ${family}`);
      // 1 + 2 + 3, not 1 + 2 × (2 + 3): one address per pod.
      expect(demand.totals("llama").pending).toBe(6);
      const other = family === "IPv4" ? "IPv6" : "IPv4";
      expect(b.polls[other] - before.b[other]).toBe(0);
      expect(c.polls[other] - before.c[other]).toBe(0);
      // The pod whose address is this replica's is left out on both of its addresses.
      expect(records.filter((r) => r.msg === "peer joined").map((r) => r.peer)).toHaveLength(2);
      await demand.stop();
    }
  });

  it("polls the ready endpoints of its own Service, drops one gone from it at once, keeps peers when the API fails", async () => {
    // This replica's address, as the downward API gives it; its own endpoint must be left out.
    const podIp = process.env.POD_IP;
    process.env.POD_IP = "10.255.0.1";
    cleanup(() => {
      if (podIp === undefined) delete process.env.POD_IP;
      else process.env.POD_IP = podIp;
    });
    const hub = new FakeHub("llama");
    const hubB = new FakeHub("llama");
    const hubC = new FakeHub("llama");
    hubB.t("llama").pending = 2;
    hubC.t("llama").pending = 3;
    const [b, c] = [await peer(hubB), await peer(hubC)];
    const api = await sliceApi();
    for (const s of [
      // Peers sit on one address with different ports here; in a cluster, one port and many IPs.
      peerSlice("coldfront-peers", b.port, ["127.0.0.1"]),
      peerSlice("coldfront-peers", c.port, ["127.0.0.1", "10.255.0.1"]),
      peerSlice("other-service", c.port, ["127.0.0.1"]),
    ])
      api.apply(s);
    const { log, records } = capturingLogger();
    const demand = cluster({
      hub,
      peers: { namespace: "serving", service: "coldfront-peers" },
      kubeConfig: kubeConfigFor(api),
      discoveryInterval: 30,
      adminPort: 1,
      log,
    });
    await waitFor(() => demand.totals("llama").pending === 5, "B + C through discovery");
    expect(api.requests[0]?.query.get("labelSelector")).toBe("kubernetes.io/service-name=coldfront-peers");
    expect(records.some((r) => r.msg === "peer joined" && r.peer === `http://10.255.0.1:${c.port}`)).toBe(
      false,
    );

    // The API server fails: discovery keeps the last peers and says so once.
    api.failLists(Number.POSITIVE_INFINITY);
    await waitFor(() => records.some((r) => r.msg.startsWith("peer discovery failed")), "the failure");
    expect(demand.totals("llama").pending).toBe(5);
    api.failLists(0);

    // C leaves the Service while it still answers: only discovery can explain the drop.
    api.delete("EndpointSlice", "serving", `coldfront-peers-${c.port}`);
    await waitFor(() => demand.totals("llama").pending === 2, "C to be dropped");
    expect(records.some((r) => r.msg === "peer left" && r.peer === c.url)).toBe(true);

    // A hung API server does not hang stop(): the list call is aborted.
    api.holdLists();
    const lists = api.lists;
    await waitFor(() => api.lists > lists, "a hung list call");
    const started = performance.now();
    await demand.stop();
    expect(performance.now() - started).toBeLessThan(3000);
  });
});

describe("peersFromSlices", () => {
  const slice = (s: Partial<V1EndpointSlice>): V1EndpointSlice =>
    ({ addressType: "IPv4", endpoints: [], ...s }) as V1EndpointSlice;

  it("takes ready endpoints on the admin port, without this replica, each once", () => {
    const slices = [
      slice({
        ports: [
          { name: "http", port: 8080 },
          { name: "admin", port: 9095 },
        ],
        endpoints: [
          { addresses: ["10.0.0.1"], conditions: { ready: true } },
          { addresses: ["10.0.0.2"], conditions: { ready: false } },
          { addresses: ["10.0.0.3"] }, // ready unset: Kubernetes says read it as ready
          { addresses: ["10.0.0.9"], conditions: { ready: true } }, // this replica
        ],
      }),
      // The same endpoint in a second slice during a transition: listed once.
      slice({ ports: [{ name: "admin", port: 9095 }], endpoints: [{ addresses: ["10.0.0.1"] }] }),
      // No port named admin: the configured admin port.
      slice({ ports: [{ name: "metrics", port: 1234 }], endpoints: [{ addresses: ["10.0.1.1"] }] }),
      slice({ addressType: "IPv6", endpoints: [{ addresses: ["fd00::5"] }] }),
      slice({ addressType: "FQDN", endpoints: [{ addresses: ["peer.example"] }] }),
    ];
    expect(peersFromSlices(slices, 9090, new Set(["10.0.0.9"]))).toEqual([
      "http://10.0.0.1:9095",
      "http://10.0.0.3:9095",
      "http://10.0.1.1:9090",
      "http://[fd00::5]:9090",
    ]);
  });
});

describe("peersFromSlices on a dual-stack Service", () => {
  const pod = (uid: string, address: string, ready = true) => ({
    addresses: [address],
    conditions: { ready },
    targetRef: { kind: "Pod", namespace: "serving", name: `name-${uid}`, uid },
  });
  const v4 = (...endpoints: V1Endpoint[]): V1EndpointSlice => ({
    addressType: "IPv4",
    ports: [{ name: "admin", port: 9090 }],
    endpoints,
  });
  const v6 = (...endpoints: V1Endpoint[]): V1EndpointSlice => ({
    addressType: "IPv6",
    ports: [{ name: "admin", port: 9090 }],
    endpoints,
  });

  it("takes one address per pod, of the preferred family, IPv4 unless told otherwise", () => {
    const slices = [
      v4(pod("a", "10.0.0.1"), pod("b", "10.0.0.2")),
      v6(pod("a", "fd00::1"), pod("b", "fd00::2")),
    ];
    expect(peersFromSlices(slices, 1, new Set())).toEqual(["http://10.0.0.1:9090", "http://10.0.0.2:9090"]);
    expect(peersFromSlices(slices, 1, new Set(), "IPv6")).toEqual([
      "http://[fd00::1]:9090",
      "http://[fd00::2]:9090",
    ]);
  });

  it("falls back to the other family when the pod has no ready address in the preferred one", () => {
    const slices = [v4(pod("a", "10.0.0.1", false)), v6(pod("a", "fd00::1"))];
    expect(peersFromSlices(slices, 1, new Set())).toEqual(["http://[fd00::1]:9090"]);
  });

  it("leaves out the pod any of whose addresses is this replica's", () => {
    const slices = [
      v4(pod("me", "10.0.0.9"), pod("b", "10.0.0.2")),
      v6(pod("me", "fd00::9"), pod("b", "fd00::2")),
    ];
    // Only the IPv6 address is known as ours (POD_IP of an IPv6-primary pod), yet IPv4 is asked for.
    expect(peersFromSlices(slices, 1, new Set(["fd00::9"]))).toEqual(["http://10.0.0.2:9090"]);
  });

  it("groups by namespace/name when the targetRef has no uid, and keeps endpoints without one apart", () => {
    const byName = (name: string, address: string) => ({
      addresses: [address],
      targetRef: { kind: "Pod", namespace: "serving", name },
    });
    const slices = [
      v4(byName("p", "10.0.0.1"), { addresses: ["10.0.0.5"] }),
      v6(byName("p", "fd00::1"), { addresses: ["fd00::5"] }),
    ];
    expect(peersFromSlices(slices, 1, new Set())).toEqual([
      "http://10.0.0.1:9090",
      "http://10.0.0.5:9090",
      "http://[fd00::5]:9090",
    ]);
  });

  it("prefers a slice that names the admin port for the same pod and family", () => {
    const slices: V1EndpointSlice[] = [
      { addressType: "IPv4", ports: [{ name: "http", port: 8080 }], endpoints: [pod("a", "10.0.0.1")] },
      v4(pod("a", "10.0.0.1")),
    ];
    expect(peersFromSlices(slices, 7777, new Set())).toEqual(["http://10.0.0.1:9090"]);
  });
});

describe("ownFamily", () => {
  it("is POD_IP's family, else the first of POD_IPS, else IPv4", () => {
    expect(ownFamily({ POD_IP: "fd00::3", POD_IPS: "fd00::3,10.1.2.3" })).toBe("IPv6");
    expect(ownFamily({ POD_IP: "10.1.2.3", POD_IPS: "10.1.2.3,fd00::3" })).toBe("IPv4");
    expect(ownFamily({ POD_IPS: "fd00::3" })).toBe("IPv6");
    expect(ownFamily({})).toBe("IPv4");
  });
});

describe("selfAddresses", () => {
  it("is POD_IP/POD_IPS when set, else this machine's interface addresses", () => {
    expect([...selfAddresses({ POD_IP: "10.1.2.3", POD_IPS: "10.1.2.3,fd00::3" })]).toEqual([
      "10.1.2.3",
      "fd00::3",
    ]);
    expect(selfAddresses({}).has("127.0.0.1")).toBe(true);
  });
});
