/**
 * The configuration contract of DESIGN.md "Configuration", validated once at start. Past this
 * point the code trusts its inputs; every error names the key path.
 */
import { z } from "zod";
import { parseDuration, parseSize } from "./units.js";

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `expected a duration with a unit (250ms, 2s, 10m, 1h), got "${text}"`,
    });
    return z.NEVER;
  }
  return ms;
});

const size = z.union([z.string(), z.number()]).transform((text, ctx) => {
  const bytes = parseSize(text);
  if (bytes === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `expected a size in bytes or with a unit (512KiB, 16MiB), got "${text}"`,
    });
    return z.NEVER;
  }
  return bytes;
});

/** host:port, [v6]:port, or :port (all interfaces). */
const listenAddress = z.string().transform((text, ctx) => {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    ctx.addIssue({
      code: "custom",
      message: `expected host:port (0.0.0.0:8080, 127.0.0.1:0), got "${text}"`,
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
        interval: duration.default(1000),
        heldInterval: duration.default(200),
        timeout: duration.default(2000),
      })
      .strict()
      .optional(),
    process: z
      .object({
        command: z.array(z.string()).min(1, "expected the command as a non-empty list of words"),
        cwd: z.string().optional(),
        env: z.record(z.string(), z.string()).default({}),
        url: httpUrl,
        idleTimeout: duration.default(300_000),
        startTimeout: duration.default(600_000),
        stopGracePeriod: duration.default(10_000),
        probeInterval: duration.default(200),
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
        hosts: z.array(z.string().min(1)).min(1).optional(),
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
    readiness: readiness.optional(),
    scaledObject: z.object({ namespace: name, name }).strict().optional(),
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
        peerInterval: duration.default(500),
        peerStaleAfter: duration.default(30_000),
      })
      .strict()
      .optional(),
    limits: z
      .object({
        holdTimeout: duration.default(600_000),
        maxPending: z.number().int().positive().default(1000),
        maxBodyBytes: size.default(16 * 1024 * 1024),
        upstreamIdleTimeout: duration.default(300_000),
        // Issue 4: the share of maxPending that one client (API key, else address) may hold.
        maxClientShare: z.number().gt(0).max(1).default(0.5),
        // Subtracted from a client's stated timeout so it hears from us before it gives up.
        clientTimeoutMargin: duration.default(2000),
      })
      .strict()
      .default({
        holdTimeout: 600_000,
        maxPending: 1000,
        maxBodyBytes: 16 * 1024 * 1024,
        upstreamIdleTimeout: 300_000,
        maxClientShare: 0.5,
        clientTimeoutMargin: 2000,
      }),
    hold: z
      .object({ keepaliveAfter: duration.default(10_000), keepaliveInterval: duration.default(15_000) })
      .strict()
      .default({ keepaliveAfter: 10_000, keepaliveInterval: 15_000 }),
    release: z
      .object({
        concurrency: z.number().int().min(0).default(64),
        retryBackoff: duration.default(100),
        retryBackoffMax: duration.default(2000),
      })
      .strict()
      .default({ concurrency: 64, retryBackoff: 100, retryBackoffMax: 2000 }),
    shutdown: z
      .object({ gracePeriod: duration.default(30_000) })
      .strict()
      .default({ gracePeriod: 30_000 }),
    log: z
      .object({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
      })
      .strict()
      .default({ level: "info" }),
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
