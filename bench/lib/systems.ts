/**
 * The systems under comparison, each started the way its users run it, on 127.0.0.1, in its
 * own process, in front of one upstream URL.
 */
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { stringify } from "yaml";
import { benchScript, COLDFRONT_CLI, DIST, ROOT } from "./paths.js";
import { openFilesLimit, processTree } from "./proc-stats.js";
import { Child, freePort, poll, waitForPort } from "./procs.js";

/**
 * The systems of every warm table (warm, stream, paced, paced-1k), in table order. node-pipe is
 * no HTTP proxy: a byte pipe in Node, the floor of any proxy written on Node.js.
 */
export const SYSTEMS = [
  "direct",
  "coldfront",
  "nginx",
  "haproxy",
  "@fastify/http-proxy",
  "http-proxy",
  "node-pipe",
] as const;
export type BaseSystemName = (typeof SYSTEMS)[number];
/**
 * Plus coldfront variants: with tracing on (`--otel`) and built from another commit (`--baseline`);
 * and the hold table's floor, `node:http hold` (no proxy: a bare node:http server that holds).
 */
export type SystemName = BaseSystemName | "coldfront+otel" | `coldfront@${string}` | "node:http hold";

export interface System {
  readonly name: SystemName;
  /** Where clients send requests, e.g. http://127.0.0.1:PORT. */
  readonly url: string;
  /** The proxy's processes now (nginx: master and workers); empty for direct. */
  pids(): number[];
  stop(): Promise<void>;
}

/** A system that could not run here, and why (printed and written to the results). */
export interface Skipped {
  readonly name: SystemName;
  readonly skipped: string;
}

export interface Workspace {
  /** A fresh temporary directory for configs, logs and nginx's prefix. */
  readonly dir: string;
  /** With --profile: every coldfront runs with --cpu-prof and leaves its profile here. */
  readonly profileDir: string | undefined;
  /** NODE_OPTIONS for every coldfront process (--node-options), e.g. "--max-semi-space-size=16". */
  readonly coldfrontNodeOptions: string | undefined;
  /** Extra environment for every coldfront process (--coldfront-env "K=V ..."). */
  readonly coldfrontEnv: Readonly<Record<string, string>>;
}

/** A compiled coldfront: this checkout's dist-bench/, or a baseline commit's (--baseline). */
export interface ColdfrontBuild {
  /** dist-bench/ of the build; its src/cli.js is the CLI. */
  readonly dist: string;
  /** Where that build's proto/ lives (the gRPC scaler loads it at start). */
  readonly proto: string;
}

const THIS_BUILD: ColdfrontBuild = { dist: DIST, proto: join(ROOT, "proto") };

/** The first of these paths that exists: distribution packages first. */
function findBinary(paths: readonly string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

export const NGINX = findBinary(["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]);
export const HAPROXY = findBinary(["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"]);

export function nginxVersion(): string | undefined {
  if (!NGINX) return undefined;
  // `nginx -v` prints to stderr.
  const out = spawnSync(NGINX, ["-v"], { encoding: "utf8" });
  return `${out.stderr}${out.stdout}`.trim().replace(/^nginx version:\s*/, "") || undefined;
}

export function haproxyVersion(): string | undefined {
  if (!HAPROXY) return undefined;
  const out = spawnSync(HAPROXY, ["-v"], { encoding: "utf8" });
  // "HAProxy version 2.6.12-1+deb12u3 2025/10/03 - https://haproxy.org/"
  return /HA-?Proxy version (\S+)/i.exec(out.stdout)?.[1];
}

/**
 * coldfront's gRPC scaler finds proto/ two levels above its module, which from dist-bench/src/
 * is dist-bench/: point that at the repository's proto/ (tsc copies no non-TS files).
 */
function linkProto(build: ColdfrontBuild): void {
  const link = join(build.dist, "proto");
  if (!existsSync(link)) symlinkSync(build.proto, link, "dir");
}

export interface ColdfrontOptions {
  readonly name: string;
  readonly upstream: string;
  /** Extra config (limits, release, scaler, readiness of the target ...). */
  readonly config?: Record<string, unknown>;
  readonly target?: Record<string, unknown>;
  /** Names the CPU profile (with --profile): `<label>.cpuprofile`. */
  readonly label: string;
  /** The name in the tables; "coldfront" unless a variant. */
  readonly system?: SystemName;
  /** Another build (--baseline); this checkout's dist-bench/ by default. */
  readonly build?: ColdfrontBuild;
  /** Environment on top of --coldfront-env, e.g. the OTLP exporter's variables. */
  readonly env?: Readonly<Record<string, string>>;
}

export interface Coldfront extends System {
  readonly adminUrl: string;
  readonly child: Child;
  readonly scalerAddress: string | undefined;
}

/** Node names a profile CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; name it by scenario. */
function nameProfile(dir: string, pid: number, label: string): void {
  try {
    const file = readdirSync(dir).find((f) => f.includes(`.${pid}.`) && f.endsWith(".cpuprofile"));
    if (file) renameSync(join(dir, file), join(dir, `${label}.cpuprofile`));
  } catch {}
}

/** Starts `coldfront proxy --config <yaml>` as users do, and waits for /readyz. */
export async function startColdfront(ws: Workspace, o: ColdfrontOptions): Promise<Coldfront> {
  const build = o.build ?? THIS_BUILD;
  linkProto(build);
  const [port, admin] = [await freePort(), await freePort()];
  const scaler = o.config?.scaler as { listen: string } | undefined;
  const config = {
    listen: `127.0.0.1:${port}`,
    admin: `127.0.0.1:${admin}`,
    shutdown: { gracePeriod: "1s" },
    ...o.config,
    targets: [{ name: o.name, upstream: o.upstream, ...o.target }],
  };
  const file = join(ws.dir, `coldfront-${port}.yaml`);
  writeFileSync(file, stringify(config));
  const cli = build === THIS_BUILD ? COLDFRONT_CLI : join(build.dist, "src", "cli.js");
  const child = Child.spawn(
    "coldfront",
    process.execPath,
    [
      ...(ws.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${ws.profileDir}`] : []),
      // As its users run it: with the V8 flags of its own first line (`#!/usr/bin/env -S node ...`).
      ...shebangFlags(cli),
      cli,
      "proxy",
      "--config",
      file,
    ],
    {
      cwd: ROOT,
      logFile: join(ws.dir, `coldfront-${port}.log`),
      env: {
        ...process.env,
        ...(ws.coldfrontNodeOptions ? { NODE_OPTIONS: ws.coldfrontNodeOptions } : {}),
        ...ws.coldfrontEnv,
        ...o.env,
      },
      role: "sut",
    },
  );
  const adminUrl = `http://127.0.0.1:${admin}`;
  try {
    await waitForPort(port, child);
    await poll(
      "coldfront /readyz",
      async () => {
        if (!child.running) throw new Error(child.describe());
        const res = await fetch(`${adminUrl}/readyz`).catch(() => undefined);
        await res?.body?.cancel();
        return res?.ok ? true : undefined;
      },
      15_000,
    );
  } catch (err) {
    await child.stop();
    throw err;
  }
  return {
    name: o.system ?? "coldfront",
    url: `http://127.0.0.1:${port}`,
    adminUrl,
    child,
    scalerAddress: scaler?.listen,
    pids: () => (child.running ? [child.pid] : []),
    // SIGTERM, so that a --cpu-prof profile gets written on the way out.
    stop: async () => {
      await child.stop(5000);
      if (ws.profileDir) nameProfile(ws.profileDir, child.pid, o.label);
    },
  };
}

/** A Node system of bench/systems/ running as its own child process. */
export interface NodeSystem extends System {
  readonly child: Child;
}

/**
 * A Node script of bench/systems/ (a peer proxy, or the hold floor) as its own child process, on
 * the system-under-test side: `node [nodeFlags] <script> --port N ...`. The peer proxies get no
 * V8 flags, as their users run them; coldfront gets the flags of its CLI's first line.
 */
async function startNodeScript(
  ws: Workspace,
  name: SystemName,
  script: string,
  args: readonly string[],
  nodeFlags: readonly string[] = [],
): Promise<NodeSystem> {
  const port = await freePort();
  const argv = [...nodeFlags, benchScript(script), "--port", String(port), ...args];
  const child = Child.spawn(name, process.execPath, argv, {
    logFile: join(ws.dir, `${basename(script, ".js")}-${port}.log`),
    role: "sut",
  });
  try {
    await waitForPort(port, child);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    child,
    pids: () => (child.running ? [child.pid] : []),
    stop: () => child.stop(),
  };
}

/** A Node peer proxy (bench/systems/*.js: @fastify/http-proxy, http-proxy, node-pipe) in front of `upstream`. */
function startNodeProxy(
  ws: Workspace,
  name: SystemName,
  script: string,
  upstream: string,
  extra: readonly string[] = [],
): Promise<System> {
  return startNodeScript(ws, name, script, ["--upstream", upstream, ...extra]);
}

/**
 * `node:http hold` (bench/systems/node-hold.js), the hold table's floor: a bare node:http server
 * that keeps every request and its body until `POST /__release`, with `GET /__held` saying how
 * many it holds (and its process.memoryUsage()). No upstream. It runs with coldfront's heap
 * flags, so that the two rows differ by what coldfront does, not by how V8 sizes the heap.
 */
export function startNodeHold(ws: Workspace): Promise<NodeSystem> {
  return startNodeScript(ws, "node:http hold", "systems/node-hold.js", [], shebangFlags(COLDFRONT_CLI));
}

/**
 * nginx from the distribution's package, as the current user, with its own prefix, config,
 * pid file and temp paths. One worker: like-for-like with a single Node process. Upstream
 * keep-alive, no response buffering (what an operator proxying SSE sets), no request limits
 * per connection, no access log (coldfront logs no requests either).
 */
async function startNginx(ws: Workspace, upstream: string): Promise<System | Skipped> {
  if (!NGINX)
    return { name: "nginx", skipped: "nginx is not installed (Debian: apt-get install nginx-light)" };
  const port = await freePort();
  const prefix = join(ws.dir, `nginx-${port}`);
  mkdirSync(join(prefix, "logs"), { recursive: true });
  const u = new URL(upstream);
  const conf = `
${process.getuid?.() === 0 ? "user root;" : ""}
worker_processes 1;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  client_max_body_size 16m;
  upstream backend {
    server ${u.host};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 4s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
`;
  const file = join(prefix, "nginx.conf");
  writeFileSync(file, conf);
  const child = Child.spawn(
    "nginx",
    NGINX,
    [
      "-p",
      prefix,
      "-c",
      file,
      "-e",
      join(prefix, "logs", "error.log"),
      "-g",
      `daemon off; pid ${prefix}/nginx.pid; error_log ${prefix}/logs/error.log;`,
    ],
    { logFile: join(prefix, "stderr.log"), role: "sut" },
  );
  try {
    await waitForPort(port, child);
  } catch (err) {
    await child.stop();
    return { name: "nginx", skipped: `nginx did not start: ${(err as Error).message}` };
  }
  return {
    name: "nginx",
    url: `http://127.0.0.1:${port}`,
    pids: () => (child.running ? processTree(child.pid) : []),
    stop: () => child.stop(),
  };
}

/**
 * HAProxy from the distribution's package, in the foreground (`-db`), with its own config in the
 * scratch directory. One thread (`nbthread 1`): like-for-like with one Node process and one nginx
 * worker. Keep-alive on both sides with `http-reuse always` (idle upstream connections shared
 * between client connections, as nginx's keepalive pool is), no request buffering (`no option
 * http-buffer-request`; HTTP mode streams responses as they come), and `option http-no-delay`,
 * what an operator proxying SSE sets: without it HAProxy sends with MSG_MORE, and a lone small
 * chunk waits for the kernel's 200 ms cork timeout (measured here: first byte and every gap of a
 * paced stream at ~225 ms). Generous timeouts, no logs.
 */
async function startHaproxy(ws: Workspace, upstream: string): Promise<System | Skipped> {
  if (!HAPROXY)
    return { name: "haproxy", skipped: "haproxy is not installed (Debian: apt-get install haproxy)" };
  const port = await freePort();
  const dir = join(ws.dir, `haproxy-${port}`);
  mkdirSync(dir, { recursive: true });
  const u = new URL(upstream);
  // Two descriptors per connection (client and server side), within the hard limit children get.
  const maxconn = Math.min(20_000, Math.floor((openFilesLimit().hard - 200) / 2));
  const conf = `
global
  nbthread 1
  maxconn ${maxconn}
  pidfile ${dir}/haproxy.pid

defaults
  mode http
  maxconn ${maxconn}
  option http-keep-alive
  no option http-buffer-request
  option http-no-delay
  http-reuse always
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-request 60s
  timeout http-keep-alive 65s

frontend bench
  bind 127.0.0.1:${port}
  default_backend upstream

backend upstream
  server backend ${u.hostname}:${u.port}
`;
  const file = join(dir, "haproxy.cfg");
  writeFileSync(file, conf);
  const child = Child.spawn("haproxy", HAPROXY, ["-db", "-f", file], {
    logFile: join(dir, "stderr.log"),
    role: "sut",
  });
  try {
    await waitForPort(port, child);
  } catch (err) {
    await child.stop();
    return { name: "haproxy", skipped: `haproxy did not start: ${(err as Error).message}` };
  }
  return {
    name: "haproxy",
    url: `http://127.0.0.1:${port}`,
    pids: () => (child.running ? processTree(child.pid) : []),
    stop: () => child.stop(),
  };
}

/** Options of the Node peers that some scenarios set. */
export interface PeerOptions {
  /** @fastify/http-proxy's fastify bodyLimit (the flood gives it coldfront's maxBodyBytes). */
  readonly bodyLimit?: number;
}

/** Starts one system in front of `upstream`. */
export async function startSystem(
  ws: Workspace,
  name: BaseSystemName,
  upstream: string,
  peer: PeerOptions = {},
): Promise<System | Skipped> {
  switch (name) {
    case "direct":
      return { name, url: upstream, pids: () => [], stop: async () => {} };
    case "coldfront":
      return startColdfront(ws, { name: "bench", upstream, label: "warm" });
    case "nginx":
      return startNginx(ws, upstream);
    case "haproxy":
      return startHaproxy(ws, upstream);
    case "@fastify/http-proxy":
      return startNodeProxy(
        ws,
        name,
        "systems/fastify-http-proxy.js",
        upstream,
        peer.bodyLimit ? ["--body-limit", String(peer.bodyLimit)] : [],
      );
    case "http-proxy":
      return startNodeProxy(ws, name, "systems/http-proxy.js", upstream);
    case "node-pipe":
      return startNodeProxy(ws, name, "systems/node-pipe.js", upstream);
  }
}

/** A coldfront variant in the warm tables: tracing on, or another commit's build. */
export interface Variant {
  readonly name: SystemName;
  readonly build?: ColdfrontBuild;
  readonly env?: Readonly<Record<string, string>>;
  /** The warm scenarios it runs in (e.g. tracing only in warm JSON). */
  readonly scenarios: readonly string[];
}

export function startVariant(ws: Workspace, v: Variant, upstream: string): Promise<System> {
  const label = `warm-${v.name.replace(/[^a-z0-9.+-]+/gi, "_")}`;
  return startColdfront(ws, {
    name: "bench",
    upstream,
    label,
    system: v.name,
    ...(v.build ? { build: v.build } : {}),
    ...(v.env ? { env: v.env } : {}),
  });
}

/** The tables' note on node-pipe, for the scenarios it runs in. */
export const NODE_PIPE_NOTE =
  "node-pipe: a byte pipe in Node (no HTTP parsing; one backend connection per client connection, bytes relayed with `data` listeners and `write()`, backpressure on `drain`): the floor of any Node.js proxy on this machine. Not a proxy anyone would run: it cannot hold, route or retry anything.";

/** [NODE_PIPE_NOTE] when node-pipe is among these systems, else nothing. */
export function nodePipeNote(systems: readonly { readonly name: SystemName }[]): string[] {
  return systems.some((s) => s.name === "node-pipe") ? [NODE_PIPE_NOTE] : [];
}

export function isSkipped(s: System | Skipped): s is Skipped {
  return "skipped" in s;
}

/** The backend, listening now or after `readyAfter` ms; resolves with its ready time when asked. */
export interface Backend {
  readonly url: string;
  readonly port: number;
  readonly child: Child;
  /** Epoch ms at which it started listening (waits for it). */
  readyAt(ms?: number): Promise<number>;
  stop(): Promise<void>;
}

export async function startBackend(
  ws: Workspace,
  readyAfter = 0,
  port?: number,
  /** Past this many POSTs in progress, connections are reset (backend.ts --capacity); 0: none. */
  capacity = 0,
): Promise<Backend> {
  const p = port ?? (await freePort());
  const child = Child.spawn(
    "backend",
    process.execPath,
    [
      benchScript("backend.js"),
      "--port",
      String(p),
      "--ready-after",
      String(readyAfter),
      ...(capacity > 0 ? ["--capacity", String(capacity)] : []),
    ],
    { logFile: join(ws.dir, `backend-${p}.log`), role: "load" },
  );
  const readyAt = (ms = readyAfter + 15_000) =>
    child.waitMessage<{ at: number }>((m) => m.event === "ready", ms).then((m) => m.at);
  if (readyAfter === 0) {
    try {
      await readyAt();
    } catch (err) {
      await child.stop();
      throw err;
    }
  }
  return { url: `http://127.0.0.1:${p}`, port: p, child, readyAt, stop: () => child.stop() };
}

/** The node flags on a script's `#!/usr/bin/env -S node ...` line, or none. */
function shebangFlags(script: string): string[] {
  const first = readFileSync(script, "utf8").split("\n", 1)[0] ?? "";
  const m = /^#!\S*env -S node (.+)$/.exec(first);
  return m ? (m[1] as string).trim().split(/\s+/) : [];
}
