/**
 * A plain-text summary of V8 CPU profiles (`node --cpu-prof`): self time by function and by
 * package, enough to see where the warm path spends its time without a flame-graph viewer
 * (the .cpuprofile files themselves open in Chrome DevTools or speedscope).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
}

/** node_modules/<pkg>, node:internal, (program), or the repository file. */
function packageOf(url: string, name: string): string {
  if (!url) return name.startsWith("(") ? name : "(native)";
  if (url.startsWith("node:")) return "node:internal";
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1] as string;
  const src = /\/(src|bench)\/(.*)$/.exec(url);
  return src ? `${src[1]}/${src[2]}` : url;
}

function top(map: Map<string, number>, total: number, n: number): string[] {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(
      ([k, ms]) => `${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${k}`,
    );
}

export function summarizeProfiles(dir: string): string {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  } catch {
    return "";
  }
  const out: string[] = [];
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), "utf8")) as CpuProfile;
    const interval = (p.endTime - p.startTime) / 1000 / Math.max(1, p.samples.length);
    const byFn = new Map<string, number>();
    const byPkg = new Map<string, number>();
    let total = 0;
    for (const node of p.nodes) {
      const ms = (node.hitCount ?? 0) * interval;
      if (ms === 0) continue;
      total += ms;
      const { functionName, url, lineNumber } = node.callFrame;
      const file = url.replace(/^.*\/(node_modules|dist-bench)\//, "");
      const fn = `${functionName || "(anonymous)"} ${file ? `${file}:${lineNumber + 1}` : ""}`.trim();
      byFn.set(fn, (byFn.get(fn) ?? 0) + ms);
      const pkg = packageOf(url, functionName);
      byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + ms);
    }
    out.push(
      `# ${f}: ${total.toFixed(0)} ms sampled`,
      "",
      "## self time by package",
      ...top(byPkg, total, 20),
      "",
      "## self time by function",
      ...top(byFn, total, 40),
      "",
    );
  }
  return out.join("\n");
}
