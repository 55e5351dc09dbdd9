/**
 * Optional API keys (README "Who may wake a model", config `auth.apiKeys.file`): one key per
 * line, so a Kubernetes Secret can be mounted as the file. Only SHA-256 digests are kept in
 * memory, and a presented key is compared against every digest with timingSafeEqual, so neither
 * the comparison's time nor a log line tells anything about a key. The file is read again when it
 * changes (a Secret update swaps it), and a file that became empty or unreadable keeps the keys
 * already loaded.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import type { FastifyBaseLogger } from "fastify";
import { ConfigError } from "../errors.js";

/** How often the file is checked for a change (a Secret update reaches the pod within ~1 min anyway). */
const RELOAD_INTERVAL = 10_000;

function digest(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

/** The key a request presents: `Authorization: Bearer`, Azure's `api-key`, or `x-api-key`. */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (auth !== undefined) {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const other = headers["api-key"] ?? headers["x-api-key"];
  const v = Array.isArray(other) ? other[0] : other;
  return v?.trim() || undefined;
}

function parseKeys(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

export class ApiKeys {
  readonly #file: string;
  readonly #log: FastifyBaseLogger;
  #digests: Buffer[];
  #ids: string[];
  #mtimeMs: number;
  #timer: NodeJS.Timeout | undefined;
  readonly #reloadInterval: number;

  private constructor(
    file: string,
    keys: string[],
    mtimeMs: number,
    log: FastifyBaseLogger,
    reloadInterval: number,
  ) {
    this.#file = file;
    this.#reloadInterval = reloadInterval;
    this.#log = log;
    this.#mtimeMs = mtimeMs;
    this.#digests = keys.map(digest);
    this.#ids = this.#digests.map((d) => d.subarray(0, 9).toString("base64url"));
  }

  /** Reads the file at start; a missing, unreadable or empty file is a config error. */
  static async load(
    file: string,
    log: FastifyBaseLogger,
    reloadInterval = RELOAD_INTERVAL,
  ): Promise<ApiKeys> {
    let text: string;
    let mtimeMs: number;
    try {
      text = await readFile(file, "utf8");
      mtimeMs = (await stat(file)).mtimeMs;
    } catch (err) {
      throw new ConfigError(`auth.apiKeys.file: cannot read ${file}: ${(err as Error).message}`);
    }
    const keys = parseKeys(text);
    if (keys.length === 0) throw new ConfigError(`auth.apiKeys.file: ${file} holds no keys (one per line)`);
    const k = new ApiKeys(file, keys, mtimeMs, log, reloadInterval);
    k.#schedule();
    return k;
  }

  get size(): number {
    return this.#digests.length;
  }

  /**
   * The verified key's id (a digest prefix: stable, not the key) or undefined. Every stored
   * digest is compared, whatever matched, so the time taken does not depend on which key fits.
   */
  verify(headers: IncomingHttpHeaders): string | undefined {
    const key = presentedKey(headers);
    if (key === undefined) return undefined;
    const d = digest(key);
    let found = -1;
    for (let i = 0; i < this.#digests.length; i++) {
      if (timingSafeEqual(d, this.#digests[i] as Buffer)) found = i;
    }
    return found < 0 ? undefined : this.#ids[found];
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => void this.#reload(), this.#reloadInterval);
    this.#timer.unref();
  }

  async #reload(): Promise<void> {
    try {
      const s = await stat(this.#file);
      if (s.mtimeMs !== this.#mtimeMs) {
        const keys = parseKeys(await readFile(this.#file, "utf8"));
        this.#mtimeMs = s.mtimeMs;
        if (keys.length === 0) {
          this.#log.warn({ file: this.#file }, "API key file is empty; keeping the keys loaded before");
        } else {
          this.#digests = keys.map(digest);
          this.#ids = this.#digests.map((d) => d.subarray(0, 9).toString("base64url"));
          this.#log.info({ file: this.#file, keys: keys.length }, "API keys reloaded");
        }
      }
    } catch (err) {
      this.#log.warn({ file: this.#file, err: (err as Error).message }, "cannot re-read the API key file");
    }
    if (this.#timer !== undefined) this.#schedule();
  }
}
