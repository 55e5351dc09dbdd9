/**
 * The configuration contract of DESIGN.md "Configuration", validated once at start. Past this
 * point the code trusts its inputs; every error names the key path, and every bound is named in
 * its message.
 */
import { BlockList, isIP } from "node:net";
import { z } from "zod";
import { formatDuration, parseDuration, parseSize } from "./units.js";

/** setTimeout fires at once past 2^31 - 1 ms (a 600h holdTimeout would time out immediately). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const DURATION_HINT = "expected a duration with a unit (250ms, 2s, 10m, 1h)";

/**
 * A duration in ms from a string with a unit, bounded: `min` keeps a timer from spinning (a 0 ms
 * keepaliveInterval would write in a tight loop), `max` keeps it below setTimeout's limit. A bare
 * YAML number gets the same message as an unquoted string without a unit.
 */
function duration(min: number, max = MAX_TIMER_MS) {
  return z.union([z.string(), z.number()]).transform((text, ctx) => {
    const ms = typeof text === "string" ? parseDuration(text) : undefined;
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: `${DURATION_HINT}, got ${JSON.stringify(text)}` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({
        code: "custom",
        message: `must be between ${formatDuration(min)} and ${max === MAX_TIMER_MS ? "596h (the timer limit, 2^31-1 ms)" : formatDuration(max)}, got ${JSON.stringify(text)}`,
      });
      return z.NEVER;
    }
    return ms;
  });
}

const size = z.union([z.string(), z.number()]).transform((text, ctx) => {
  const bytes = parseSize(text);
  if (bytes === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `expected a size in bytes or with a unit (512KiB, 16MiB), got ${JSON.stringify(text)}`,
    });
    return z.NEVER;
  }
  return bytes;
});

/** host:port, [v6]:port, or :port (all interfaces). */
const listenAddress = z.union([z.string(), z.number()]).transform((raw, ctx) => {
  const text = String(raw);
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    ctx.addIssue({
      code: "custom",
      message: `expected host:port (0.0.0.0:8080, 127.0.0.1:0), got ${JSON.stringify(raw)}`,
    });
    return z.NEVER;
  }
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
});

const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}, "expected an http:// or https:// URL");

const name = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/i, "expected a name of letters, digits, '-', '_' or '.'");

/** An address or a CIDR (10.0.0.0/8, fd00::/8), as net.BlockList takes it. */
const cidr = z.string().refine((s) => {
  const [addr, bits, ...rest] = s.trim().split("/");
  const family = isIP(addr ?? "");
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d{1,3}$/.test(bits) && n <= (family === 4 ? 32 : 128);
}, "expected an IP address or CIDR (10.0.0.0/8, fd00::/8)");

/** Host names are matched without their port (the Host header's port is dropped first). */
const hostName = z
  .string()
  .min(1)
  .refine(
    (h) => !/^[^[]*:\d*$/.test(h) && !/^\[.*\]:\d*$/.test(h),
    "expected a host name without a port: Host is matched without its port",
  );

const coldSignal = z
  .object({
    status: z.number().int().min(100).max(599).optional(),
    header: z
      .string()
      .regex(/^[^:\s]+(:.*)?$/, "expected 'name' or 'name: value'")
      .optional(),
    bodyContains: z.string().min(1).optional(),
  })
  .strict()
  .refine((s) => s.status !== undefined || s.header !== undefined || s.bodyContains !== undefined, {
    message: "a cold signal needs at least one of status, header, bodyContains",
  });

const readiness = z
  .object({
    kubernetes: z.object({ namespace: name, service: name }).strict().optional(),
    probe: z
      .object({
        url: httpUrl,
        interval: duration(10).default(1000),
        heldInterval: duration(10).default(200),
        timeout: duration(10).default(2000),
        // Failed probes in a row before a ready target counts as cold: one lost probe must not
        // turn GETs into target_cold.
        failureThreshold: z.number().int().min(1).max(100).default(3),
      })
      .strict()
      .optional(),
    process: z
      .object({
        command: z.array(z.string()).min(1, "expected the command as a non-empty list of words"),
        cwd: z.string().optional(),
        env: z.record(z.string(), z.string()).default({}),
        url: httpUrl,
        idleTimeout: duration(100).default(300_000),
        startTimeout: duration(100).default(600_000),
        stopGracePeriod: duration(10).default(10_000),
        probeInterval: duration(10).default(200),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((r) => [r.kubernetes, r.probe, r.process].filter((x) => x !== undefined).length <= 1, {
    message: "choose one readiness source: kubernetes, probe or process",
  });

const target = z
  .object({
    name,
    upstream: httpUrl,
    match: z
      .object({
        hosts: z.array(hostName).min(1).optional(),
        pathPrefixes: z.array(z.string().startsWith("/", "a path prefix starts with '/'")).min(1).optional(),
        models: z.array(z.string().min(1)).min(1).optional(),
      })
      .strict()
      .optional(),
    wakeMethods: z
      .array(z.enum(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))
      .min(1)
      .default(["POST"]),
    coldSignals: z.union([z.literal("default"), z.literal("none"), z.array(coldSignal)]).default("default"),
    // Answers that mean "busy now" (README "Release after a cold start"): a replay is put back.
    overloadSignals: z
      .union([z.literal("default"), z.literal("none"), z.array(coldSignal)])
      .default("default"),
    readiness: readiness.optional(),
    scaledObject: z.object({ namespace: name, name }).strict().optional(),
    /** Per-target overrides of the process-wide `limits` and `hold` keys that differ per model. */
    limits: z
      .object({ edgeTimeout: duration(1000).optional() })
      .strict()
      .optional(),
    hold: z
      .object({ expectedColdStart: duration(100).optional() })
      .strict()
      .optional(),
    // Wake without KEDA: patch the scale subresource 0 -> 1 on demand (README "Waking without KEDA").
    wake: z
      .object({
        scale: z
          .object({ namespace: name, kind: z.literal("Deployment").default("Deployment"), name })
          .strict(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const configSchema = z
  .object({
    listen: listenAddress.default({ host: "0.0.0.0", port: 8080 }),
    admin: listenAddress.default({ host: "0.0.0.0", port: 9090 }),
    scaler: z
      .object({
        listen: listenAddress,
        peers: z.object({ namespace: name, service: name }).strict().optional(),
        peerInterval: duration(50).default(500),
        peerStaleAfter: duration(100).default(30_000),
      })
      .strict()
      .optional(),
    limits: z
      .object({
        holdTimeout: duration(100).default(600_000),
        maxPending: z.number().int().positive().default(1000),
        maxBodyBytes: size.default(16 * 1024 * 1024),
        // README "Sizing maxHeldBytes": what the whole process may keep of request bodies.
        maxHeldBytes: size.default(256 * 1024 * 1024),
        upstreamIdleTimeout: duration(1000).default(300_000),
        // The share of maxPending that one client (verified API key, else address) may hold.
        maxClientShare: z.number().gt(0).max(1).default(0.5),
        // Subtracted from a client's stated timeout so it hears from us before it gives up.
        clientTimeoutMargin: duration(0, 60_000).default(2000),
        // Headers and body must arrive within it (408 request_timeout).
        requestTimeout: duration(100).default(60_000),
        maxConnections: z.number().int().positive().optional(),
        // Off unless set: a non-streaming generation sends its head only once it is done.
        upstreamHeadersTimeout: duration(100).optional(),
        // Off unless set: answer held non-streaming requests before an edge proxy would cut them.
        edgeTimeout: duration(1000).optional(),
      })
      .strict()
      .prefault({}),
    hold: z
      .object({
        keepaliveAfter: duration(100).default(10_000),
        keepaliveInterval: duration(100).default(15_000),
        // The cold-start ETA before any cold start of a target was seen; unknown until one was, if unset.
        expectedColdStart: duration(100).optional(),
        // How long POST /targets/:name/wake counts as demand.
        wakeHold: duration(1000).default(300_000),
      })
      .strict()
      .prefault({}),
    release: z
      .object({
        // A hard cap on replays waiting for their response head; 0 = no cap (DESIGN.md step 5).
        concurrency: z.number().int().min(0).default(64),
        // Where the window starts after each cold period; it grows under concurrency, never past it.
        initialWindow: z.number().int().min(1).default(8),
        // Replays started and not finished, per target; 0 = no bound. Envoy's default
        // circuit-breaker limit per cluster.
        maxInFlight: z.number().int().min(0).default(1024),
        // Further tries for a replay answered with an overload signal or dropped before its
        // head; 0 = no bound (until its deadline).
        retries: z.number().int().min(0).default(2),
        // A replay holds its release slot until its response head arrives or this long after it
        // was sent, whichever is first (README "Release after a cold start").
        slotTimeout: duration(10).default(500),
        retryBackoff: duration(10).default(100),
        retryBackoffMax: duration(10).default(2000),
      })
      .strict()
      .prefault({})
      .refine((r) => r.retryBackoffMax >= r.retryBackoff, {
        message: "retryBackoffMax must be at least retryBackoff",
        path: ["retryBackoffMax"],
      }),
    shutdown: z
      .object({ gracePeriod: duration(0).default(30_000) })
      .strict()
      .prefault({}),
    // Peers whose X-Forwarded-For is believed for the client address (README "Who may wake a model").
    trustedProxies: z.array(cidr).default([]),
    auth: z
      .object({ apiKeys: z.object({ file: z.string().min(1) }).strict() })
      .strict()
      .optional(),
    log: z
      .object({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        // One line per finished request, never a body, a query string or a header value.
        requests: z.boolean().default(false),
        requestSample: z.number().min(0).max(1).default(1),
      })
      .strict()
      .prefault({}),
    targets: z.array(target).min(1, "at least one target is needed"),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.targets.forEach((t, i) => {
      if (seen.has(t.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["targets", i, "name"],
          message: `duplicate target name "${t.name}"`,
        });
      }
      seen.add(t.name);
    });
  });

/** The configuration as the schema input accepts it (durations as strings). */
export type ConfigInput = z.input<typeof configSchema>;
/** The validated configuration: durations in ms, sizes in bytes. */
export type Config = z.output<typeof configSchema>;
export type TargetConfig = Config["targets"][number];
export type ColdSignalConfig = z.output<typeof coldSignal>;
export type ListenAddress = Config["listen"];

/** trustedProxies as a BlockList, for the client-address rule of README "Who may wake a model". */
export function trustedProxyList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.trim().split("/") as [string, string | undefined];
    const type = isIP(addr) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}
