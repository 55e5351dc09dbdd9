/**
 * The systems under comparison, each started the way its users run it, on 127.0.0.1, in its
 * own process, in front of one upstream URL.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { stringify } from "yaml";
import { benchScript, COLDFRONT_CLI, DIST, ROOT } from "./paths.js";
import { processTree } from "./proc-stats.js";
import { Child, freePort, poll, waitForPort } from "./procs.js";

export const SYSTEMS = ["direct", "coldfront", "nginx", "@fastify/http-proxy", "http-proxy"] as const;
export type SystemName = (typeof SYSTEMS)[number];

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
}

export const NGINX = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"].find((p) =>
  existsSync(p),
);

export function nginxVersion(): string | undefined {
  if (!NGINX) return undefined;
  // `nginx -v` prints to stderr.
  const out = spawnSync(NGINX, ["-v"], { encoding: "utf8" });
  return `${out.stderr}${out.stdout}`.trim().replace(/^nginx version:\s*/, "") || undefined;
}

/**
 * coldfront's gRPC scaler finds proto/ two levels above its module, which from dist-bench/src/
 * is dist-bench/: point that at the repository's proto/ (tsc copies no non-TS files).
 */
function linkProto(): void {
  const link = join(DIST, "proto");
  if (!existsSync(link)) symlinkSync(join(ROOT, "proto"), link, "dir");
}

export interface ColdfrontOptions {
  readonly name: string;
  readonly upstream: string;
  /** Extra config (limits, release, scaler, readiness of the target ...). */
  readonly config?: Record<string, unknown>;
  readonly target?: Record<string, unknown>;
  /** Names the CPU profile (with --profile): `<label>.cpuprofile`. */
  readonly label: string;
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
  linkProto();
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
  const child = Child.spawn(
    "coldfront",
    process.execPath,
    [
      ...(ws.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${ws.profileDir}`] : []),
      COLDFRONT_CLI,
      "proxy",
      "--config",
      file,
    ],
    {
      cwd: ROOT,
      logFile: join(ws.dir, `coldfront-${port}.log`),
      env: ws.coldfrontNodeOptions ? { ...process.env, NODE_OPTIONS: ws.coldfrontNodeOptions } : process.env,
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
    name: "coldfront",
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

async function startNodeProxy(ws: Workspace, name: SystemName, script: string, upstream: string) {
  const port = await freePort();
  const child = Child.spawn(
    name,
    process.execPath,
    [benchScript(script), "--port", String(port), "--upstream", upstream],
    {
      logFile: join(ws.dir, `${basename(script, ".js")}-${port}.log`),
    },
  );
  try {
    await waitForPort(port, child);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    pids: () => (child.running ? [child.pid] : []),
    stop: () => child.stop(),
  };
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
    { logFile: join(prefix, "stderr.log") },
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

/** Starts one system in front of `upstream`. */
export async function startSystem(
  ws: Workspace,
  name: SystemName,
  upstream: string,
): Promise<System | Skipped> {
  switch (name) {
    case "direct":
      return { name, url: upstream, pids: () => [], stop: async () => {} };
    case "coldfront":
      return startColdfront(ws, { name: "bench", upstream, label: "warm" });
    case "nginx":
      return startNginx(ws, upstream);
    case "@fastify/http-proxy":
      return startNodeProxy(ws, name, "systems/fastify-http-proxy.js", upstream);
    case "http-proxy":
      return startNodeProxy(ws, name, "systems/http-proxy.js", upstream);
  }
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

export async function startBackend(ws: Workspace, readyAfter = 0, port?: number): Promise<Backend> {
  const p = port ?? (await freePort());
  const child = Child.spawn(
    "backend",
    process.execPath,
    [benchScript("backend.js"), "--port", String(p), "--ready-after", String(readyAfter)],
    { logFile: join(ws.dir, `backend-${p}.log`) },
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
