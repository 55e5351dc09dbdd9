/**
 * A fake Kubernetes API server for tests: a real node:http server on 127.0.0.1 that speaks the
 * list/watch protocol of the API for `discovery.k8s.io/v1` EndpointSlices, `keda.sh/v1alpha1`
 * ScaledObjects and `apps/v1` Deployments, and the `scale` subresource of Deployments, so the
 * real @kubernetes/client-node (its generated list, read and patch calls, Watch and ListWatch)
 * runs against it unchanged.
 *
 * What it does as the API server does:
 * - one global, monotonically increasing resourceVersion; every object carries the version of
 *   its last write, a list answers `{kind: "<Kind>List", apiVersion, metadata: {resourceVersion},
 *   items}` (built-in types' items without kind/apiVersion, custom resources' with them);
 * - `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`) and
 *   `fieldSelector` (`metadata.name`, `metadata.namespace`, with `=`, `==`, `!=`);
 * - watch (`?watch=true&resourceVersion=N`) as a chunked response of newline-delimited JSON
 *   events `{type, object}` from N onwards; resourceVersion "" or "0" starts with a synthetic
 *   ADDED per current object; a MODIFIED that makes an object enter or leave a selector is sent
 *   as ADDED or DELETED, as the API server does; a DELETED carries the version of the deletion;
 * - `allowWatchBookmarks=true`: BOOKMARK events (`{kind, apiVersion, metadata: {resourceVersion}}`)
 *   every `bookmarkInterval` ms when set, or on `bookmark()`;
 * - `timeoutSeconds`: the watch response ends cleanly when it runs out, right after a BOOKMARK
 *   when the watch allows them;
 * - a bounded event history: a watch from a version older than the history gets 410 Gone, either
 *   as an HTTP 410 with a `Status` body (reason `Expired`) or as an `ERROR` event carrying that
 *   Status inside a 200 watch stream, which then ends (both happen in real clusters: the first
 *   from the watch cache, the second from etcd after a compaction);
 * - `Authorization: Bearer <token>` required (401 with a Status body otherwise); errors are
 *   `Status` objects with code, reason and message.
 * - the scale subresource of a Deployment (`/apis/apps/v1/namespaces/<ns>/deployments/<name>/scale`,
 *   issue 12 "Wake without KEDA"): GET answers an `autoscaling/v1` `Scale` (the Deployment's
 *   name, namespace, uid and resourceVersion; `spec.replicas` omitted at 0, as Go's `omitempty`
 *   does; `status.replicas` and `status.selector` from the Deployment); PATCH takes
 *   `application/merge-patch+json`, `application/strategic-merge-patch+json` (the same merge
 *   here: a Scale has no lists) and `application/json-patch+json` (add, remove, replace, move,
 *   copy, test; a failed op is 422), 415 for any other type. The patched Scale's
 *   `metadata.resourceVersion`, when set, is a precondition: 409 Conflict unless it is the
 *   Deployment's current one. A change of `spec.replicas` writes the Deployment itself (a new
 *   resourceVersion, a MODIFIED event, visible to a GET or a watch of the Deployment); a patch
 *   that changes nothing writes nothing and keeps the resourceVersion, as the API server skips a
 *   no-op update. 404 for a missing Deployment, 422 for a negative or non-integer replica count,
 *   400 for a name that differs from the URL's. `failScale()` and `holdScale()` inject errors
 *   and a slow API server.
 *
 * What a real API server (and a real cluster) does that this fake does not:
 * - TLS, and authentication other than one static bearer token; no RBAC at all (a missing
 *   ClusterRole/Role shows up as 403 on list and on watch, see deploy/RBAC.md; `forbid()`
 *   imitates that per kind and namespace, as `uninstall()` imitates a CRD not installed);
 * - HTTP/2 (client-node speaks HTTP/1.1 through undici, so connection multiplexing and
 *   GOAWAY handling on a real API server are not exercised);
 * - server-side defaults: a watch without timeoutSeconds is ended after a random 30 to 60
 *   minutes, and list/watch requests are subject to API Priority and Fairness (429 with
 *   Retry-After under load); the fake never throttles;
 * - the real watch cache: several API server replicas behind a load balancer each with its own
 *   cache, so a list or watch can be served from a cache that lags another replica; `limit` and
 *   `continue` pagination; `resourceVersionMatch`; `sendInitialEvents` streaming lists; periodic
 *   bookmarks about once a minute (here only when `bookmarkInterval` is set);
 * - admission, validation and defaulting of objects (what `apply()` stores is what it is given),
 *   and generation, managedFields or finalizers;
 * - real network failure modes: a half-open connection after a node or load balancer dies is only
 *   imitated by `silenceWatches()`, and TCP keepalive never gets to detect anything here;
 * - the Deployment controller: a new `spec.replicas` starts nothing; `followReplicas()` plays
 *   the part a test needs (a ready EndpointSlice once scaled up). No PUT on the scale
 *   subresource, no server-side apply, no `generation`/`observedGeneration`, no HPA or KEDA
 *   writing replicas unless a test calls `setReplicas()`;
 * - the EndpointSlice controller itself: slices of a Service with many endpoints split at 100
 *   endpoints, dual-stack IPv4/IPv6 slices of the same Pods, and the order and timing in which
 *   the `ready`, `serving` and `terminating` conditions change during a rollout are whatever the
 *   test applies.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import { applyScalePatch, type PatchError } from "./kube-patch.js";

interface ResourceType {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  /** Built-in types' list items carry no kind/apiVersion; custom resources' do. */
  readonly typedItems: boolean;
}

const RESOURCES: readonly ResourceType[] = [
  {
    group: "discovery.k8s.io",
    version: "v1",
    plural: "endpointslices",
    kind: "EndpointSlice",
    typedItems: true,
  },
  { group: "keda.sh", version: "v1alpha1", plural: "scaledobjects", kind: "ScaledObject", typedItems: false },
  { group: "apps", version: "v1", plural: "deployments", kind: "Deployment", typedItems: false },
];

const DEPLOYMENTS = RESOURCES.find((r) => r.kind === "Deployment") as ResourceType;

export type FakeKind = "EndpointSlice" | "ScaledObject" | "Deployment";
type EventType = "ADDED" | "MODIFIED" | "DELETED";

interface Stored extends KubernetesObject {
  metadata: NonNullable<KubernetesObject["metadata"]> & { name: string; namespace: string };
}

interface HistoryEvent {
  readonly rv: number;
  readonly type: EventType;
  readonly resource: ResourceType;
  /** The object after the change (for DELETED: its last state, at the deletion's version). */
  readonly object: Stored;
  /** The object before a MODIFIED, so a selector that stops matching yields DELETED. */
  readonly previous: Stored | undefined;
}

type Selector = (o: Stored) => boolean;

interface OpenWatch {
  readonly res: ServerResponse;
  readonly resource: ResourceType;
  readonly namespace: string | undefined;
  readonly matches: Selector;
  readonly bookmarks: boolean;
  /** Nothing is written any more: a half-open connection as the client sees it. */
  silent: boolean;
  timeout: NodeJS.Timeout | undefined;
}

/** A request the fake received, for assertions on what the client asked. */
export interface FakeRequest {
  readonly verb: "list" | "watch" | "get" | "patch";
  readonly resource: string;
  /** "scale" for the scale subresource. */
  readonly subresource?: string;
  readonly namespace: string | undefined;
  /** The object's name, for get and patch. */
  readonly name?: string;
  readonly query: URLSearchParams;
  /** A patch's Content-Type and body. */
  readonly contentType?: string;
  readonly body?: string;
}

/** A change of a Deployment's spec.replicas: `by` a scale PATCH, or by `setReplicas()`. */
export interface ScaleChange {
  readonly namespace: string;
  readonly name: string;
  readonly from: number;
  readonly to: number;
  readonly by: "patch" | "set";
  /** The Deployment's resourceVersion after the change. */
  readonly resourceVersion: string;
}

/** What `failScale()` makes the next scale requests answer: a Status of `code`, or a reset connection. */
export type ScaleFailure = number | "reset";

export interface FakeKubeOptions {
  /** Events kept for watches that resume from a past version; older versions get 410. */
  readonly historyLimit?: number;
  /** Send a BOOKMARK this often to watches that allow them; 0 (default) never on its own. */
  readonly bookmarkInterval?: number;
  /** The bearer token the fake requires; kubeConfigFor() uses it. */
  readonly token?: string;
}

export type ExpiredForm = "status" | "event";

export class FakeKube {
  readonly token: string;
  /** Every request received, oldest first. */
  readonly requests: FakeRequest[] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #objects = new Map<string, Stored>();
  readonly #history: HistoryEvent[] = [];
  readonly #historyLimit: number;
  readonly #watches = new Set<OpenWatch>();
  readonly #heldLists: (() => void)[] = [];
  #rv = 1000;
  /** Watches from a version below this get 410 Gone. */
  #oldestValid = 1000;
  #expiredForm: ExpiredForm = "status";
  #holdLists = false;
  #failLists: { count: number; code: number } = { count: 0, code: 500 };
  #failWatches: { count: number; code: number } = { count: 0, code: 500 };
  /** Kinds answered 404 (uninstall()), and `kind/namespace` or `kind/*` answered 403 (forbid()). */
  readonly #uninstalled = new Set<string>();
  readonly #forbidden = new Set<string>();
  #bookmarkTimer: NodeJS.Timeout | undefined;
  #failScale: { count: number; failure: ScaleFailure; verb: "get" | "patch" | undefined } = {
    count: 0,
    failure: 500,
    verb: undefined,
  };
  #holdScale = false;
  readonly #heldScale: (() => void)[] = [];
  readonly #scaleListeners = new Set<(change: ScaleChange) => void>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #bookmarksSent = 0;
  #gone = { status: 0, event: 0 };
  #url = "";

  private constructor(options: FakeKubeOptions) {
    this.token = options.token ?? "fake-token";
    this.#historyLimit = options.historyLimit ?? 500;
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.on("connection", (s: Socket) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    if (options.bookmarkInterval && options.bookmarkInterval > 0) {
      this.#bookmarkTimer = setInterval(() => this.bookmark(), options.bookmarkInterval);
    }
  }

  static async start(options: FakeKubeOptions = {}): Promise<FakeKube> {
    const fake = new FakeKube(options);
    await new Promise<void>((resolve, reject) => {
      fake.#server.once("error", reject);
      fake.#server.listen(0, "127.0.0.1", () => resolve());
    });
    fake.#url = `http://127.0.0.1:${(fake.#server.address() as AddressInfo).port}`;
    return fake;
  }

  get url(): string {
    return this.#url;
  }

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  get lists(): number {
    return this.requests.filter((r) => r.verb === "list").length;
  }

  get watches(): number {
    return this.requests.filter((r) => r.verb === "watch").length;
  }

  /** Watch responses open now (silenced ones included). */
  get openWatches(): number {
    return this.#watches.size;
  }

  get bookmarksSent(): number {
    return this.#bookmarksSent;
  }

  /** 410 Gone answers given so far, by form: HTTP status, or ERROR event inside a watch. */
  get gone(): { readonly status: number; readonly event: number } {
    return { ...this.#gone };
  }

  /** Creates or replaces an object (kind from `obj.kind`); returns it as stored. */
  apply<T extends KubernetesObject>(obj: T): T {
    const resource = resourceOfKind(obj.kind);
    const name = obj.metadata?.name;
    if (!name) throw new Error("apply: metadata.name is required");
    const namespace = obj.metadata?.namespace ?? "default";
    const key = keyOf(resource, namespace, name);
    const previous = this.#objects.get(key);
    const rv = ++this.#rv;
    const stored = structuredClone(obj) as unknown as Stored;
    stored.apiVersion = apiVersionOf(resource);
    stored.kind = resource.kind;
    stored.metadata = {
      ...stored.metadata,
      name,
      namespace,
      uid: previous?.metadata.uid ?? randomUUID(),
      creationTimestamp: previous?.metadata.creationTimestamp ?? new Date(),
      resourceVersion: String(rv),
    };
    this.#objects.set(key, stored);
    this.#record({ rv, type: previous ? "MODIFIED" : "ADDED", resource, object: stored, previous });
    return structuredClone(stored) as unknown as T;
  }

  /** Deletes an object; false when there was none. */
  delete(kind: FakeKind, namespace: string, name: string): boolean {
    const resource = resourceOfKind(kind);
    const key = keyOf(resource, namespace, name);
    const previous = this.#objects.get(key);
    if (!previous) return false;
    this.#objects.delete(key);
    const rv = ++this.#rv;
    const object = structuredClone(previous);
    object.metadata.resourceVersion = String(rv);
    this.#record({ rv, type: "DELETED", resource, object, previous });
    return true;
  }

  /** Cuts every open watch connection mid-stream (half an event written, then the socket reset). */
  dropWatches(): number {
    const n = this.#watches.size;
    for (const w of [...this.#watches]) {
      this.#forget(w);
      // A torn chunk: the client sees the connection die inside a chunked body, not a clean end.
      w.res.write('{"type":"MODIFIED","object":{"kind":');
      w.res.socket?.destroy();
    }
    return n;
  }

  /**
   * Every watch open now stays open but never delivers anything again, whatever changes: what
   * a client sees of a half-open connection. Watches opened later work normally.
   */
  silenceWatches(): number {
    let n = 0;
    for (const w of this.#watches) {
      if (w.silent) continue;
      w.silent = true;
      if (w.timeout) clearTimeout(w.timeout);
      w.timeout = undefined;
      n++;
    }
    return n;
  }

  /** Ends every open (not silenced) watch cleanly, as the API server does at timeoutSeconds. */
  endWatches(): number {
    let n = 0;
    for (const w of [...this.#watches]) {
      if (w.silent) continue;
      this.#end(w);
      n++;
    }
    return n;
  }

  /**
   * Forgets the event history, as a compaction does, so every version a client holds now is too
   * old, and ends the open watches so their clients come back with it:
   * - "status": each watch ends cleanly; the resumed watch gets HTTP 410 with a Status body;
   * - "event": each watch gets an ERROR event carrying the 410 Status, then ends; a resumed
   *   watch from an old version gets the same inside a 200 stream.
   */
  expireHistory(form: ExpiredForm = "status"): void {
    this.#expiredForm = form;
    // A write to something nobody watches moves the version past everything handed out.
    this.#rv++;
    this.#history.length = 0;
    this.#oldestValid = this.#rv;
    for (const w of [...this.#watches]) {
      if (w.silent) continue;
      if (form === "event") {
        this.#write(w, { type: "ERROR", object: expired(this.#rv - 1, this.#rv) });
        this.#gone.event++;
      }
      this.#end(w);
    }
  }

  /** Sends a BOOKMARK at the current version to every watch that allows bookmarks. */
  bookmark(): void {
    for (const w of this.#watches) if (w.bookmarks) this.#bookmark(w);
  }

  /** List requests wait (the client sees a slow API server) until releaseLists(). */
  holdLists(): void {
    this.#holdLists = true;
  }

  releaseLists(): void {
    this.#holdLists = false;
    for (const go of this.#heldLists.splice(0)) go();
  }

  /** The next `count` list requests are answered with a Status of `code`. */
  failLists(count: number, code = 500): void {
    this.#failLists = { count, code };
  }

  /** The next `count` watch requests are answered with a Status of `code`. */
  failWatches(count: number, code = 500): void {
    this.#failWatches = { count, code };
  }

  /**
   * `kind`'s CRD is not installed (or its API group not served): every request for it is a 404
   * NotFound, as the API server answers a path it does not serve, until install().
   */
  uninstall(kind: FakeKind): void {
    this.#uninstalled.add(kind);
  }

  install(kind: FakeKind): void {
    this.#uninstalled.delete(kind);
  }

  /**
   * Requests for `kind` in `namespace` (every namespace when not given) are 403 Forbidden, worded
   * as RBAC words it for a service account without a rule for them, until allow().
   */
  forbid(kind: FakeKind, namespace?: string): void {
    this.#forbidden.add(`${kind}/${namespace ?? "*"}`);
  }

  allow(kind: FakeKind, namespace?: string): void {
    this.#forbidden.delete(`${kind}/${namespace ?? "*"}`);
  }

  #refusal(
    resource: ResourceType,
    namespace: string | undefined,
    verb: string,
  ): { code: number; reason: string; message: string } | undefined {
    if (this.#uninstalled.has(resource.kind))
      return { code: 404, reason: "NotFound", message: "the server could not find the requested resource" };
    const forbidden = [`${resource.kind}/*`, `${resource.kind}/${namespace ?? ""}`];
    if (!forbidden.some((k) => this.#forbidden.has(k))) return undefined;
    const where = namespace === undefined ? "at the cluster scope" : `in the namespace "${namespace}"`;
    return {
      code: 403,
      reason: "Forbidden",
      message: `${resource.plural}.${resource.group} is forbidden: User "system:serviceaccount:serving:coldfront" cannot ${verb} resource "${resource.plural}" in API group "${resource.group}" ${where}`,
    };
  }

  /**
   * The next `count` requests to a scale subresource (of `verb` only, when given) fail: with a
   * Status of `failure` as the API server words it (403 Forbidden as RBAC does, 409 Conflict,
   * 500 InternalError, ...), or, for "reset", with the connection destroyed before any answer.
   */
  failScale(count: number, failure: ScaleFailure = 500, verb?: "get" | "patch"): void {
    this.#failScale = { count, failure, verb };
  }

  /** Scale requests wait (a slow API server) until releaseScale(); a request aborted meanwhile is dropped. */
  holdScale(): void {
    this.#holdScale = true;
  }

  releaseScale(): void {
    this.#holdScale = false;
    for (const go of this.#heldScale.splice(0)) go();
  }

  /** Scale requests waiting in holdScale(). */
  get heldScale(): number {
    return this.#heldScale.length;
  }

  /** A Deployment's spec.replicas (0 when unset), or undefined when there is no such Deployment. */
  replicasOf(namespace: string, name: string): number | undefined {
    const d = this.#objects.get(keyOf(DEPLOYMENTS, namespace, name));
    return d === undefined ? undefined : replicasIn(d);
  }

  /**
   * Sets a Deployment's spec.replicas as someone else writing through the API would (a person's
   * `kubectl scale`, an HPA, KEDA): a new resourceVersion and a MODIFIED event.
   */
  setReplicas(namespace: string, name: string, replicas: number): void {
    const d = this.#objects.get(keyOf(DEPLOYMENTS, namespace, name));
    if (!d) throw new Error(`setReplicas: no Deployment ${namespace}/${name}`);
    this.#writeReplicas(d, replicas, "set");
  }

  /** Calls `listener` after every change of a Deployment's spec.replicas; returns its removal. */
  onScale(listener: (change: ScaleChange) => void): () => void {
    this.#scaleListeners.add(listener);
    return () => this.#scaleListeners.delete(listener);
  }

  /**
   * Plays the Deployment and EndpointSlice controllers for one Deployment, as far as coldfront
   * sees them: `delay` ms after its spec.replicas turns above 0, the Deployment's status says
   * that many replicas and an EndpointSlice of `service` (labelled
   * `kubernetes.io/service-name`) has one ready endpoint; after it turns 0, the slice is deleted
   * and the status says 0. Returns its removal; close() clears what is pending.
   */
  followReplicas(o: { namespace: string; deployment: string; service: string; delay?: number }): () => void {
    const slice = `${o.service}-fake`;
    return this.onScale((c) => {
      if (c.namespace !== o.namespace || c.name !== o.deployment) return;
      const t = setTimeout(() => {
        this.#timers.delete(t);
        const d = this.#objects.get(keyOf(DEPLOYMENTS, o.namespace, o.deployment));
        if (!d || replicasIn(d) !== c.to) return; // changed again meanwhile: that change decides
        const status = { replicas: c.to, readyReplicas: c.to, availableReplicas: c.to };
        this.apply({ ...d, status } as KubernetesObject);
        if (c.to > 0) {
          this.apply({
            apiVersion: "discovery.k8s.io/v1",
            kind: "EndpointSlice",
            addressType: "IPv4",
            metadata: {
              name: slice,
              namespace: o.namespace,
              labels: { "kubernetes.io/service-name": o.service },
            },
            endpoints: [{ addresses: ["10.0.0.1"], conditions: { ready: true, serving: true } }],
            ports: [{ name: "http", port: 8000, protocol: "TCP" }],
          } as KubernetesObject);
        } else this.delete("EndpointSlice", o.namespace, slice);
      }, o.delay ?? 0);
      this.#timers.add(t);
    });
  }

  async close(): Promise<void> {
    if (this.#bookmarkTimer) clearInterval(this.#bookmarkTimer);
    this.#bookmarkTimer = undefined;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#scaleListeners.clear();
    this.#heldScale.length = 0;
    for (const w of [...this.#watches]) this.#forget(w);
    this.#heldLists.length = 0;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #record(e: HistoryEvent): void {
    this.#history.push(e);
    while (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.shift() as HistoryEvent;
      this.#oldestValid = dropped.rv;
    }
    for (const w of this.#watches) this.#deliver(w, e);
  }

  /** Sends one history event to one watch, translated through its selectors. */
  #deliver(w: OpenWatch, e: HistoryEvent): void {
    if (w.silent || e.resource !== w.resource) return;
    if (w.namespace !== undefined && e.object.metadata.namespace !== w.namespace) return;
    const now = w.matches(e.object);
    const before = e.previous !== undefined && w.matches(e.previous);
    let type: EventType;
    if (e.type === "DELETED") {
      if (!before) return;
      type = "DELETED";
    } else if (e.type === "ADDED") {
      if (!now) return;
      type = "ADDED";
    } else if (now) {
      type = before ? "MODIFIED" : "ADDED";
    } else if (before) {
      type = "DELETED";
    } else {
      return;
    }
    this.#write(w, { type, object: e.object });
  }

  #bookmark(w: OpenWatch): void {
    if (w.silent) return;
    this.#write(w, {
      type: "BOOKMARK",
      object: {
        kind: w.resource.kind,
        apiVersion: apiVersionOf(w.resource),
        metadata: { resourceVersion: String(this.#rv) },
      },
    });
    this.#bookmarksSent++;
  }

  #write(w: OpenWatch, event: unknown): void {
    if (w.res.writableEnded || w.res.destroyed) return;
    w.res.write(`${JSON.stringify(event)}\n`);
  }

  #end(w: OpenWatch): void {
    this.#forget(w);
    if (!w.res.writableEnded) w.res.end();
  }

  #forget(w: OpenWatch): void {
    this.#watches.delete(w);
    if (w.timeout) clearTimeout(w.timeout);
    w.timeout = undefined;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://fake");
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      req.resume();
      sendStatus(res, 401, "Unauthorized", "Unauthorized");
      return;
    }
    const route = parsePath(url.pathname);
    if (route?.subresource === "scale") {
      // Reads the body itself (a PATCH has one); a client gone mid-body only ends this exchange.
      this.#scale(req, res, route.namespace as string, route.name as string, url.searchParams).catch(() =>
        res.destroy(),
      );
      return;
    }
    req.resume();
    if (!route) {
      sendStatus(res, 404, "NotFound", "the server could not find the requested resource");
      return;
    }
    if (req.method !== "GET") {
      sendStatus(res, 405, "MethodNotAllowed", `the fake serves GET only, not ${req.method}`);
      return;
    }
    const { resource, namespace, name } = route;
    const q = url.searchParams;
    const verb = name !== undefined ? "get" : q.get("watch") ? "watch" : "list";
    const refused = this.#refusal(resource, namespace, verb);
    if (refused) {
      this.requests.push({ verb, resource: resource.plural, namespace, query: q });
      sendStatus(res, refused.code, refused.reason, refused.message);
      return;
    }
    if (name !== undefined) {
      this.requests.push({ verb: "get", resource: resource.plural, namespace, query: q });
      const found = namespace === undefined ? undefined : this.#objects.get(keyOf(resource, namespace, name));
      if (!found) {
        sendStatus(res, 404, "NotFound", `${resource.plural}.${resource.group} "${name}" not found`);
        return;
      }
      sendJson(res, 200, found);
      return;
    }
    let matches: Selector;
    try {
      matches = selectorOf(q.get("labelSelector") ?? "", q.get("fieldSelector") ?? "");
    } catch (err) {
      sendStatus(res, 400, "BadRequest", (err as Error).message);
      return;
    }
    const watching = q.get("watch") === "true" || q.get("watch") === "1";
    this.requests.push({ verb: watching ? "watch" : "list", resource: resource.plural, namespace, query: q });
    if (watching) this.#watch(res, resource, namespace, matches, q);
    else if (this.#holdLists) {
      this.#heldLists.push(() => this.#list(res, resource, namespace, matches));
    } else this.#list(res, resource, namespace, matches);
  }

  #list(res: ServerResponse, resource: ResourceType, namespace: string | undefined, matches: Selector): void {
    if (res.destroyed) return;
    if (this.#failLists.count > 0) {
      this.#failLists.count--;
      sendStatus(res, this.#failLists.code, "InternalError", "the fake was told to fail this list");
      return;
    }
    const items = this.#current(resource, namespace, matches).map((o) => {
      if (resource.typedItems) return o;
      const { kind: _k, apiVersion: _a, ...rest } = o;
      return rest;
    });
    sendJson(res, 200, {
      kind: `${resource.kind}List`,
      apiVersion: apiVersionOf(resource),
      metadata: { resourceVersion: String(this.#rv) },
      items,
    });
  }

  #watch(
    res: ServerResponse,
    resource: ResourceType,
    namespace: string | undefined,
    matches: Selector,
    q: URLSearchParams,
  ): void {
    if (this.#failWatches.count > 0) {
      this.#failWatches.count--;
      sendStatus(res, this.#failWatches.code, "InternalError", "the fake was told to fail this watch");
      return;
    }
    const rvParam = q.get("resourceVersion") ?? "";
    const from = rvParam === "" || rvParam === "0" ? undefined : Number(rvParam);
    if (from !== undefined && !Number.isInteger(from)) {
      sendStatus(res, 400, "BadRequest", `invalid resourceVersion ${JSON.stringify(rvParam)}`);
      return;
    }
    const tooOld = from !== undefined && from < this.#oldestValid;
    if (tooOld && this.#expiredForm === "status") {
      this.#gone.status++;
      sendJson(res, 410, expired(from, this.#oldestValid));
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache, private" });
    res.flushHeaders();
    const w: OpenWatch = {
      res,
      resource,
      namespace,
      matches,
      bookmarks: q.get("allowWatchBookmarks") === "true",
      silent: false,
      timeout: undefined,
    };
    if (tooOld) {
      this.#gone.event++;
      this.#write(w, { type: "ERROR", object: expired(from as number, this.#oldestValid) });
      res.end();
      return;
    }
    if (from === undefined) {
      // "" or "0": start with the current state as synthetic ADDED events.
      for (const o of this.#current(resource, namespace, matches))
        this.#write(w, { type: "ADDED", object: o });
    } else {
      for (const e of this.#history) if (e.rv > from) this.#deliver(w, e);
    }
    const timeoutSeconds = Number(q.get("timeoutSeconds") ?? "0");
    if (timeoutSeconds > 0)
      w.timeout = setTimeout(() => {
        if (w.bookmarks) this.#bookmark(w);
        this.#end(w);
      }, timeoutSeconds * 1000);
    this.#watches.add(w);
    res.on("close", () => this.#forget(w));
  }

  async #scale(
    req: IncomingMessage,
    res: ServerResponse,
    namespace: string,
    name: string,
    query: URLSearchParams,
  ): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const verb = req.method === "GET" ? "get" : req.method === "PATCH" ? "patch" : undefined;
    if (!verb) {
      sendStatus(res, 405, "MethodNotAllowed", `the fake serves GET and PATCH on scale, not ${req.method}`);
      return;
    }
    const contentType = (req.headers["content-type"] ?? "").split(";")[0]?.trim() ?? "";
    this.requests.push({
      verb,
      resource: DEPLOYMENTS.plural,
      subresource: "scale",
      namespace,
      name,
      query,
      ...(verb === "patch" ? { contentType, body } : {}),
    });
    if (this.#holdScale) await new Promise<void>((resolve) => this.#heldScale.push(resolve));
    if (res.destroyed) return;
    const f = this.#failScale;
    if (f.count > 0 && (f.verb === undefined || f.verb === verb)) {
      f.count--;
      if (f.failure === "reset") res.socket?.destroy();
      else sendJson(res, f.failure, injected(f.failure, verb, namespace, name));
      return;
    }
    const current = this.#objects.get(keyOf(DEPLOYMENTS, namespace, name));
    if (!current) {
      sendJson(res, 404, withDetails(status(404, "NotFound", `deployments.apps "${name}" not found`), name));
      return;
    }
    const scale = scaleOf(current);
    if (verb === "get") {
      sendJson(res, 200, scale);
      return;
    }
    let patched: Record<string, unknown>;
    try {
      patched = applyScalePatch(scale, contentType, body);
    } catch (err) {
      const e = err as PatchError;
      sendJson(res, e.code ?? 400, status(e.code ?? 400, e.reason ?? "BadRequest", e.message));
      return;
    }
    const meta = (patched.metadata ?? {}) as { name?: unknown; resourceVersion?: unknown };
    if (meta.name !== name) {
      const msg = `the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`;
      sendStatus(res, 400, "BadRequest", msg);
      return;
    }
    const replicas = (patched.spec as { replicas?: unknown } | undefined)?.replicas ?? 0;
    if (
      typeof replicas !== "number" ||
      !Number.isInteger(replicas) ||
      replicas < 0 ||
      replicas > 2 ** 31 - 1
    ) {
      const msg = `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`;
      sendJson(res, 422, withDetails(status(422, "Invalid", msg), name));
      return;
    }
    // The Scale's resourceVersion is the Deployment's: set in the patch, it is a precondition.
    const wanted = meta.resourceVersion;
    if (wanted !== undefined && wanted !== "" && wanted !== current.metadata.resourceVersion) {
      sendJson(res, 409, conflict(name));
      return;
    }
    if (replicas === replicasIn(current)) {
      sendJson(res, 200, scale);
      return;
    }
    const written = this.#writeReplicas(current, replicas, "patch");
    sendJson(res, 200, scaleOf(written));
  }

  #writeReplicas(d: Stored, replicas: number, by: ScaleChange["by"]): Stored {
    const from = replicasIn(d);
    const spec = { ...((d as { spec?: object }).spec ?? {}), replicas };
    this.apply({ ...d, spec } as KubernetesObject);
    const written = this.#objects.get(keyOf(DEPLOYMENTS, d.metadata.namespace, d.metadata.name)) as Stored;
    const change: ScaleChange = {
      namespace: d.metadata.namespace,
      name: d.metadata.name,
      from,
      to: replicas,
      by,
      resourceVersion: written.metadata.resourceVersion as string,
    };
    for (const l of [...this.#scaleListeners]) l(change);
    return written;
  }

  #current(resource: ResourceType, namespace: string | undefined, matches: Selector): Stored[] {
    const out: Stored[] = [];
    for (const o of this.#objects.values()) {
      if (o.kind !== resource.kind) continue;
      if (namespace !== undefined && o.metadata.namespace !== namespace) continue;
      if (matches(o)) out.push(o);
    }
    return out.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }
}

/**
 * A Deployment for the fake to hold (apply() it): `replicas` in its spec, selector and pod labels
 * `app: <name>`, one vLLM-looking container. What the scale subresource reads.
 */
export function fakeDeployment(namespace: string, name: string, replicas = 0): KubernetesObject {
  const labels = { app: name };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace, labels },
    ...{
      spec: {
        replicas,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: { containers: [{ name: "vllm", image: "vllm/vllm-openai:latest" }] },
        },
      },
      status: { replicas, readyReplicas: replicas },
    },
  };
}

/** A KubeConfig whose current context points at `fake` with its bearer token. */
export function kubeConfigFor(fake: FakeKube): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // client-node refuses a plain http:// server unless skipTLSVerify is set, TLS or not.
    clusters: [{ name: "fake", server: fake.url, skipTLSVerify: true }],
    users: [{ name: "fake", token: fake.token }],
    contexts: [{ name: "fake", cluster: "fake", user: "fake" }],
    currentContext: "fake",
  });
  return kc;
}

function resourceOfKind(kind: string | undefined): ResourceType {
  const r = RESOURCES.find((x) => x.kind === kind);
  if (!r) throw new Error(`the fake API server does not serve kind ${kind}`);
  return r;
}

function apiVersionOf(r: ResourceType): string {
  return `${r.group}/${r.version}`;
}

function keyOf(r: ResourceType, namespace: string, name: string): string {
  return `${r.plural}/${namespace}/${name}`;
}

/** `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/scale]]` (scale: Deployments only) */
function parsePath(path: string):
  | {
      resource: ResourceType;
      namespace: string | undefined;
      name: string | undefined;
      subresource: "scale" | undefined;
    }
  | undefined {
  const parts = path.split("/").filter(Boolean);
  if (parts[0] !== "apis" || parts.length < 4) return undefined;
  const [, group, version, ...rest] = parts;
  let namespace: string | undefined;
  if (rest[0] === "namespaces") {
    if (rest.length < 3) return undefined;
    namespace = rest[1];
    rest.splice(0, 2);
  }
  const [plural, name, ...extra] = rest;
  const subresource =
    extra.length === 1 && extra[0] === "scale" && plural === "deployments" ? "scale" : undefined;
  if (extra.length > 0 && subresource === undefined) return undefined;
  const resource = RESOURCES.find((r) => r.group === group && r.version === version && r.plural === plural);
  if (!resource) return undefined;
  if (name !== undefined && namespace === undefined) return undefined;
  return { resource, namespace, name, subresource };
}

/** A Deployment's spec.replicas; unset is 0 here (the API server would default it to 1 on create). */
function replicasIn(d: Stored): number {
  return (d as { spec?: { replicas?: number } }).spec?.replicas ?? 0;
}

/** The `autoscaling/v1` Scale of a Deployment, as the API server's ScaleREST builds it. */
function scaleOf(d: Stored): Record<string, unknown> {
  const dep = d as Stored & {
    spec?: { replicas?: number; selector?: { matchLabels?: Record<string, string> } };
    status?: { replicas?: number };
  };
  const replicas = replicasIn(d);
  const selector = Object.entries(dep.spec?.selector?.matchLabels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return {
    kind: "Scale",
    apiVersion: "autoscaling/v1",
    metadata: {
      name: d.metadata.name,
      namespace: d.metadata.namespace,
      uid: d.metadata.uid,
      resourceVersion: d.metadata.resourceVersion,
      creationTimestamp: d.metadata.creationTimestamp,
    },
    // ScaleSpec.Replicas is `json:"replicas,omitempty"`: a Scale at 0 says `spec: {}`.
    spec: replicas === 0 ? {} : { replicas },
    status: { replicas: dep.status?.replicas ?? 0, ...(selector ? { selector } : {}) },
  };
}

function withDetails(s: ReturnType<typeof status>, name: string) {
  return { ...s, details: { name, group: "apps", kind: "deployments" } };
}

/** The API server's 409 for a stale resourceVersion precondition. */
function conflict(name: string) {
  return withDetails(
    status(
      409,
      "Conflict",
      `Operation cannot be fulfilled on deployments.apps "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    ),
    name,
  );
}

/** An injected failure of a scale request, worded as the API server words that status. */
function injected(code: number, verb: "get" | "patch", namespace: string, name: string) {
  if (code === 403) {
    const user = `system:serviceaccount:${namespace}:coldfront`;
    const msg = `deployments.apps "${name}" is forbidden: User "${user}" cannot ${verb} resource "deployments/scale" in API group "apps" in the namespace "${namespace}"`;
    return withDetails(status(403, "Forbidden", msg), name);
  }
  if (code === 409) return conflict(name);
  const reasons: Record<number, string> = {
    401: "Unauthorized",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
  };
  return status(
    code,
    reasons[code] ?? "InternalError",
    `Internal error occurred: the fake was told to fail this ${verb}`,
  );
}

function status(code: number, reason: string, message: string) {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
}

/** The Status of 410 Gone, as the API server words it. */
function expired(requested: number, oldest: number) {
  return status(410, "Expired", `too old resource version: ${requested} (${oldest})`);
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, status(code, reason, message));
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** A predicate from a label selector and a field selector, or an error naming what is wrong. */
function selectorOf(labelSelector: string, fieldSelector: string): Selector {
  const tests: Selector[] = [];
  for (const term of splitTerms(labelSelector)) tests.push(labelTerm(term));
  for (const term of splitTerms(fieldSelector)) tests.push(fieldTerm(term));
  return (o) => tests.every((t) => t(o));
}

/** Splits on commas outside parentheses: `a=b,c in (d,e)` is two terms. */
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of selector) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      terms.push(current);
      current = "";
    } else current += ch;
  }
  terms.push(current);
  return terms.map((t) => t.trim()).filter((t) => t !== "");
}

function labelTerm(term: string): Selector {
  const labels = (o: Stored) => o.metadata.labels ?? {};
  let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
  if (m) {
    const [, key, op, list] = m as unknown as [string, string, string, string];
    const values = new Set(list.split(",").map((v) => v.trim()));
    return op === "in"
      ? (o) => values.has(labels(o)[key] as string)
      : (o) => !values.has(labels(o)[key] as string);
  }
  m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(term);
  if (m) {
    const [, key, op, value] = m as unknown as [string, string, string, string];
    return op === "!=" ? (o) => labels(o)[key] !== value : (o) => labels(o)[key] === value;
  }
  m = /^(!?)([\w./-]+)$/.exec(term);
  if (m) {
    const [, not, key] = m as unknown as [string, string, string];
    return not ? (o) => !(key in labels(o)) : (o) => key in labels(o);
  }
  throw new Error(`unable to parse requirement: ${JSON.stringify(term)}`);
}

function fieldTerm(term: string): Selector {
  const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
  if (!m) throw new Error(`invalid field selector: ${JSON.stringify(term)}`);
  const [, field, op, value] = m as unknown as [string, string, string, string];
  let get: (o: Stored) => string;
  if (field === "metadata.name") get = (o) => o.metadata.name;
  else if (field === "metadata.namespace") get = (o) => o.metadata.namespace;
  else throw new Error(`field label not supported: ${field}`);
  return op === "!=" ? (o) => get(o) !== value : (o) => get(o) === value;
}
