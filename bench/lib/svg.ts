/**
 * The cold-burst chart, handwritten SVG: requests held, in flight and completed over time, with
 * the instant the backend became ready. Held and in flight come from coldfront's admin port
 * (sampled every ~50 ms), completions from the clients' own timestamps. Two panels share the
 * y axis: the whole burst, and the release zoomed in (it lasts a fraction of the wait).
 */
import type { Sample } from "./admin.js";

export interface BurstChart {
  readonly title: string;
  readonly samples: readonly Sample[];
  /** Epoch ms. */
  readonly firstSent: number;
  readonly readyAt: number;
  /** Epoch ms of each successful completion. */
  readonly completions: readonly number[];
  readonly n: number;
}

const W = 960;
const H = 380;
const TOP = 56;
const BOTTOM = 48;
const COLORS = { held: "#d97706", inFlight: "#2563eb", completed: "#16a34a", ready: "#dc2626" };

/** A round step for about `count` ticks over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const m = raw / pow;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * pow;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const f1 = (v: number) => v.toFixed(1);
/** A tick label without float noise (0.30000000000000004 -> 0.3). */
const label = (v: number) => String(Number(v.toFixed(3)));

interface Panel {
  readonly left: number;
  readonly width: number;
  /** Time window, seconds since the first request. */
  readonly from: number;
  readonly to: number;
  readonly caption: string;
  readonly yAxis: boolean;
}

function panel(c: BurstChart, p: Panel, samples: readonly Sample[], done: readonly number[]): string[] {
  const ph = H - TOP - BOTTOM;
  const yStep = niceStep(c.n, 5);
  const yMax = Math.ceil(c.n / yStep) * yStep;
  const xStep = niceStep(p.to - p.from, 6);
  const secs = (epochMs: number) => (epochMs - c.firstSent) / 1000;
  const x = (s: number) =>
    p.left + ((Math.min(Math.max(s, p.from), p.to) - p.from) / (p.to - p.from)) * p.width;
  const y = (v: number) => TOP + ph - (v / yMax) * ph;
  const pt = (s: number, v: number) => `${f1(x(s))},${f1(y(v))}`;
  const inside = (s: number) => s >= p.from && s <= p.to;

  // Counts hold their value until the next sample: steps, not slopes. Points outside the
  // window are clamped to its edges, so a line enters and leaves at the right height.
  const steps = (key: "pending" | "inFlight") => {
    const out: string[] = [pt(p.from, 0)];
    let prev = 0;
    for (const s of samples) {
      const t = secs(s.at);
      if (t > p.to) break;
      out.push(pt(t, prev), pt(t, s[key]));
      prev = s[key];
    }
    out.push(pt(p.to, prev));
    return out.join(" ");
  };
  const completed = [pt(p.from, 0)];
  done.forEach((t, i) => {
    if (secs(t) <= p.to) completed.push(pt(secs(t), i), pt(secs(t), i + 1));
  });
  completed.push(pt(p.to, done.filter((t) => secs(t) <= p.to).length));

  const out: string[] = [`<text x="${p.left}" y="${TOP - 10}" fill="#374151">${esc(p.caption)}</text>`];
  for (let v = Math.ceil(p.from / xStep) * xStep; v <= p.to + 1e-9; v += xStep) {
    const px = f1(x(v));
    out.push(
      `<line x1="${px}" y1="${TOP}" x2="${px}" y2="${TOP + ph}" stroke="#e5e7eb"/>`,
      `<text x="${px}" y="${TOP + ph + 18}" text-anchor="middle" fill="#374151">${label(v)}</text>`,
    );
  }
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    out.push(
      `<line x1="${p.left}" y1="${f1(y(v))}" x2="${p.left + p.width}" y2="${f1(y(v))}" stroke="#e5e7eb"/>`,
    );
    if (p.yAxis) {
      out.push(
        `<text x="${p.left - 8}" y="${f1(y(v) + 4)}" text-anchor="end" fill="#374151">${label(v)}</text>`,
      );
    }
  }
  out.push(
    `<line x1="${p.left}" y1="${TOP + ph}" x2="${p.left + p.width}" y2="${TOP + ph}" stroke="#6b7280"/>`,
    `<line x1="${p.left}" y1="${TOP}" x2="${p.left}" y2="${TOP + ph}" stroke="#6b7280"/>`,
  );
  const ready = secs(c.readyAt);
  if (inside(ready)) {
    out.push(
      `<line x1="${f1(x(ready))}" y1="${TOP}" x2="${f1(x(ready))}" y2="${TOP + ph}" stroke="${COLORS.ready}" stroke-width="1.5" stroke-dasharray="6 4"/>`,
      `<text x="${f1(x(ready) + 5)}" y="${TOP + 14}" fill="${COLORS.ready}">backend ready</text>`,
    );
  }
  out.push(
    `<polyline fill="none" stroke="${COLORS.held}" stroke-width="2" points="${steps("pending")}"/>`,
    `<polyline fill="none" stroke="${COLORS.inFlight}" stroke-width="2" points="${steps("inFlight")}"/>`,
    `<polyline fill="none" stroke="${COLORS.completed}" stroke-width="2" points="${completed.join(" ")}"/>`,
  );
  return out;
}

export function coldBurstSvg(c: BurstChart): string {
  const done = [...c.completions].sort((a, b) => a - b);
  // The sampler starts just before the burst: the chart starts with the first request.
  const samples = c.samples.filter((s) => s.at >= c.firstSent);
  const secs = (epochMs: number) => (epochMs - c.firstSent) / 1000;
  const end = Math.max(
    secs(done.at(-1) ?? c.readyAt),
    secs(c.readyAt),
    secs(samples.at(-1)?.at ?? c.readyAt),
  );
  const ready = secs(c.readyAt);
  // The release: from just before ready to just after the last completion.
  const releaseSpan = Math.max(0.1, (done.length > 0 ? secs(done.at(-1) as number) : end) - ready);
  const zoomFrom = Math.max(0, ready - releaseSpan * 0.25);
  const zoomTo = ready + releaseSpan * 1.2;
  const ph = H - TOP - BOTTOM;

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12" role="img" aria-labelledby="title">`,
    `<title id="title">${esc(c.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="60" y="22" font-size="15" font-weight="600" fill="#111827">${esc(c.title)}</text>`,
    ...panel(
      c,
      { left: 60, width: 500, from: 0, to: end * 1.05, caption: "the whole burst", yAxis: true },
      samples,
      done,
    ),
    ...panel(
      c,
      {
        left: 600,
        width: 336,
        from: zoomFrom,
        to: zoomTo,
        caption: "the release, zoomed in",
        yAxis: false,
      },
      samples,
      done,
    ),
    `<text x="${60 + (936 - 60) / 2}" y="${H - 10}" text-anchor="middle" fill="#111827">seconds since the first request</text>`,
    `<text transform="translate(16 ${TOP + ph / 2}) rotate(-90)" text-anchor="middle" fill="#111827">requests</text>`,
  ];
  const legend: [string, string][] = [
    ["held", COLORS.held],
    ["in flight", COLORS.inFlight],
    ["completed", COLORS.completed],
  ];
  legend.forEach(([name, color], i) => {
    // Left panel, mid-height: while the backend is down that area is empty (held is at the
    // top, in flight and completed at 0).
    const lx = 100;
    const ly = Math.round(TOP + ph * 0.4 + i * 18);
    parts.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`,
      `<text x="${lx + 28}" y="${ly}" fill="#111827">${name}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

/** A line chart of values over time: the flood's RSS per system. */
export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly { name: string; color: string; points: readonly (readonly [number, number])[] }[];
  /** Horizontal reference lines (a budget, a limit). */
  readonly marks?: readonly { y: number; label: string }[];
}

export function lineChartSvg(c: LineChart): string {
  const left = 70;
  const width = W - left - 24;
  const ph = H - TOP - BOTTOM;
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...c.series.flatMap((s) => s.points.map((p) => p[1])), ...(c.marks ?? []).map((m) => m.y)];
  const xMax = Math.max(1e-9, ...xs);
  const yStep = niceStep(Math.max(1, ...ys), 5);
  const yMax = Math.ceil(Math.max(1, ...ys) / yStep) * yStep;
  const xStep = niceStep(xMax, 8);
  const x = (v: number) => left + (v / xMax) * width;
  const y = (v: number) => TOP + ph - (v / yMax) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12" role="img" aria-labelledby="title">`,
    `<title id="title">${esc(c.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="600" fill="#111827">${esc(c.title)}</text>`,
  ];
  for (let v = 0; v <= xMax + 1e-9; v += xStep) {
    out.push(
      `<line x1="${f1(x(v))}" y1="${TOP}" x2="${f1(x(v))}" y2="${TOP + ph}" stroke="#e5e7eb"/>`,
      `<text x="${f1(x(v))}" y="${TOP + ph + 18}" text-anchor="middle" fill="#374151">${label(v)}</text>`,
    );
  }
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    out.push(
      `<line x1="${left}" y1="${f1(y(v))}" x2="${left + width}" y2="${f1(y(v))}" stroke="#e5e7eb"/>`,
      `<text x="${left - 8}" y="${f1(y(v) + 4)}" text-anchor="end" fill="#374151">${label(v)}</text>`,
    );
  }
  out.push(
    `<line x1="${left}" y1="${TOP + ph}" x2="${left + width}" y2="${TOP + ph}" stroke="#6b7280"/>`,
    `<line x1="${left}" y1="${TOP}" x2="${left}" y2="${TOP + ph}" stroke="#6b7280"/>`,
  );
  for (const m of c.marks ?? []) {
    out.push(
      `<line x1="${left}" y1="${f1(y(m.y))}" x2="${left + width}" y2="${f1(y(m.y))}" stroke="${COLORS.ready}" stroke-width="1.5" stroke-dasharray="6 4"/>`,
      `<text x="${left + width - 4}" y="${f1(y(m.y) - 5)}" text-anchor="end" fill="${COLORS.ready}">${esc(m.label)}</text>`,
    );
  }
  c.series.forEach((s, i) => {
    const points = s.points.map(([px, py]) => `${f1(x(px))},${f1(y(py))}`).join(" ");
    out.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points}"/>`,
      `<line x1="${left + 16}" y1="${TOP + 12 + i * 18}" x2="${left + 38}" y2="${TOP + 12 + i * 18}" stroke="${s.color}" stroke-width="3"/>`,
      `<text x="${left + 44}" y="${TOP + 16 + i * 18}" fill="#111827">${esc(s.name)}</text>`,
    );
  });
  out.push(
    `<text x="${left + width / 2}" y="${H - 10}" text-anchor="middle" fill="#111827">${esc(c.xLabel)}</text>`,
    `<text transform="translate(16 ${TOP + ph / 2}) rotate(-90)" text-anchor="middle" fill="#111827">${esc(c.yLabel)}</text>`,
    "</svg>",
  );
  return `${out.join("\n")}\n`;
}
