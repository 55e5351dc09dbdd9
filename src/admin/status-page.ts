/**
 * The HTML status page at `GET /` on the admin port (DESIGN.md "Admin surface"): one
 * self-contained document, inline CSS and JS, no external assets and no build step.
 *
 * The server renders it from the same snapshot as `/status`, so it reads fully with JavaScript
 * off; with JavaScript on it refreshes itself from `status` every 1.5 s. Both renders run the
 * same view functions: the browser gets their source text (Function.prototype.toString), so a
 * card looks the same whether the server or the browser drew it.
 *
 * Rules for the view functions below (everything listed in VIEW):
 * - they use only their arguments, each other and ECMAScript built-ins: no imports, no module
 *   constants, no Node or DOM API, since they also run in the browser;
 * - they take the snapshot as untrusted, loosely typed JSON (a field may be missing, or of a
 *   newer shape): anything missing renders as "—";
 * - every string from the snapshot goes through esc(), in both renders. The CSP below is the
 *   second line: no inline handler or injected script could run anyway.
 */
import { createHash } from "node:crypto";

export type TargetState = "ready" | "cold" | "waking" | "paused";

/** One target in `/status`. Fields marked optional may be absent (older or newer coldfront). */
export interface TargetStatus {
  state: TargetState;
  ready: boolean;
  /** What KEDA sees as demand: held, plus one while an admin wake is active. */
  pending: number;
  /** Requests held now (absent before the admin wake existed: then pending is the held count). */
  held?: number;
  inFlight: number;
  replaying: number;
  /** The release pacer (README "Release after a cold start"); absent from older coldfront. */
  release?: { window: number; cap: number; preHead: number; inFlight: number; maxInFlight: number };
  coldForMs: number | null;
  lastColdStartMs: number | null;
  eta?: {
    expectedMs: number | null;
    elapsedMs: number | null;
    remainingMs: number | null;
    samples: number;
    /** True once the expectation comes from observed cold starts, not `hold.expectedColdStart`. */
    learned?: boolean;
  };
  /** Oldest first, at most 20. */
  recentColdStarts?: { at: string; ms: number }[];
  /** Outcome counters since start, by the `outcome` label of `coldfront_requests_total`. */
  outcomes?: Record<string, number>;
  wake?: { active: boolean; remainingMs: number | null };
  readiness: { kind: string; synced: boolean; [fact: string]: unknown };
  autoscaler?: { paused: boolean; [fact: string]: unknown };
  /** The scale-subresource waker's facts, when the target has `wake.scale`. */
  scale?: Record<string, unknown>;
}

/** The `/status` document. */
export interface StatusSnapshot {
  startedAt: string;
  heldBytes?: number;
  maxHeldBytes?: number;
  refusedOverBudget?: number;
  targets: Record<string, TargetStatus>;
}

/** How often the browser asks `status` again; the page says so in its footer. */
const REFRESH_MS = 1500;

// ---------------------------------------------------------------------------------------------
// The view: pure functions from snapshot JSON to HTML strings, shared by server and browser.
// ---------------------------------------------------------------------------------------------

/** HTML-escapes any value, for text and for double-quoted attribute values alike. */
function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function isNum(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fmtCount(v: unknown): string {
  return isNum(v) ? String(Math.round(v)) : "\u2014";
}

function fmtMs(v: unknown): string {
  if (!isNum(v)) return "\u2014";
  const ms = Math.max(0, v);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  const m = Math.floor(s / 60);
  if (m < 1440) return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
  return `${Math.floor(m / 1440)} d ${Math.floor(m / 60) % 24} h`;
}

function fmtBytes(v: unknown): string {
  if (!isNum(v)) return "\u2014";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Math.max(0, v);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 || n >= 10 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

/** An ISO time as "2026-11-01 12:00:00 UTC": the same text on the server and in any browser. */
function fmtTime(v: unknown): string {
  const t = typeof v === "string" ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t)) return "\u2014";
  return `${new Date(t).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** One readiness or autoscaler fact: durations (keys ending in Ms) as durations, the rest as is. */
function fmtFact(key: string, v: unknown): string {
  if (v === null || v === undefined || v === "") return "\u2014";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (isNum(v)) return /Ms$/.test(key) ? esc(fmtMs(v)) : esc(v);
  if (typeof v === "string") return esc(v);
  return esc(JSON.stringify(v));
}

function renderFacts(facts: unknown, skip: string[]): string {
  if (!isObj(facts)) return "";
  const rows = Object.entries(facts)
    .filter(([k]) => !skip.includes(k))
    .map(
      ([k, v]) =>
        `<div><dt>${esc(k)}</dt><dd data-fact="${esc(k)}"${v === null || v === undefined ? ' class="muted"' : ""}>${fmtFact(k, v)}</dd></div>`,
    );
  return rows.length ? `<dl class="facts">${rows.join("")}</dl>` : "";
}

/**
 * Durations of the last cold starts (oldest first) as a sparkline, beside the latest duration in
 * large type. Points sit in `slots` fixed places, right-aligned, so the newest is always next to
 * its label and a short history reads as short. The y axis starts at 0: heights compare honestly.
 */
function renderSparkline(points: unknown, lastColdStartMs: unknown): string {
  const latest =
    `<span class="spark-last"><b data-field="lastColdStartMs">${esc(fmtMs(lastColdStartMs))}</b>` +
    `<small>latest</small></span>`;
  if (!Array.isArray(points))
    return `<div class="spark-row"><p class="muted spark-none" data-field="recentColdStarts">\u2014</p>${latest}</div>`;
  const slots = 20;
  const list = (points.filter((p) => isObj(p) && isNum(p.ms)) as { at?: unknown; ms: number }[]).slice(
    -slots,
  );
  if (list.length === 0)
    return `<div class="spark-row"><p class="muted spark-none" data-field="recentColdStarts" data-count="0">none seen yet</p>${latest}</div>`;
  const w = 240;
  const h = 48;
  const pad = 5;
  const step = (w - 2 * pad) / (slots - 1);
  const max = Math.max(...list.map((p) => p.ms), 1);
  const xy = list.map((p, i) => {
    const x = w - pad - (list.length - 1 - i) * step;
    const y = h - pad - (p.ms / max) * (h - 2 * pad);
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10] as const;
  });
  const line = xy.map(([x, y]) => `${x},${y}`).join(" ");
  const first = xy[0] as readonly [number, number];
  const last = xy[xy.length - 1] as readonly [number, number];
  const area = `M${first[0]},${h - pad} L${line.replaceAll(" ", " L")} L${last[0]},${h - pad} Z`;
  const dots = list
    .map((p, i) => {
      const [x, y] = xy[i] as readonly [number, number];
      const isLast = i === list.length - 1;
      return `<circle cx="${x}" cy="${y}" r="${isLast ? 3.5 : 2}"${isLast ? ' class="last"' : ""}><title>${esc(fmtTime(p.at))}: ${esc(fmtMs(p.ms))}</title></circle>`;
    })
    .join("");
  const label = `last ${list.length} cold start durations, longest ${fmtMs(max)}`;
  return (
    `<div class="spark-row" data-field="recentColdStarts" data-count="${list.length}">` +
    `<svg class="spark" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(label)}"><title>${esc(label)}</title>` +
    `<line class="base" x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}"/>` +
    `<line class="base" x1="${pad}" y1="${pad}" x2="${w - pad}" y2="${pad}"/>` +
    `${list.length > 1 ? `<path class="area" d="${area}"/><polyline points="${line}"/>` : ""}${dots}</svg>${latest}</div>`
  );
}

/** The sparkline's caption: how many, and what its top line stands for. */
function renderSparkScale(points: unknown): string {
  const ms = Array.isArray(points)
    ? points.filter((p) => isObj(p) && isNum(p.ms)).map((p) => p.ms as number)
    : [];
  return ms.length ? `${ms.length} seen \u00b7 top line ${fmtMs(Math.max(...ms, 1))}` : "";
}

/** Outcome counters since start; anything but forwarded and replayed is a failure worth colour. */
function renderOutcomes(outcomes: unknown): string {
  if (!isObj(outcomes)) return `<p class="muted" data-field="outcomes">\u2014</p>`;
  const good = ["forwarded", "replayed"];
  const rows = Object.entries(outcomes).map(([k, v]) => {
    const cls = !isNum(v) || v === 0 ? "zero" : good.includes(k) ? "" : "bad";
    return `<tr data-outcome="${esc(k)}"${cls ? ` class="${cls}"` : ""}><th scope="row">${esc(k)}</th><td>${esc(fmtCount(v))}</td></tr>`;
  });
  if (rows.length === 0) return `<p class="muted" data-field="outcomes">none</p>`;
  return `<table class="outcomes" data-field="outcomes"><tbody>${rows.join("")}</tbody></table>`;
}

function renderEta(eta: unknown): string {
  const e = isObj(eta) ? eta : {};
  const expected = e.expectedMs;
  const elapsed = e.elapsedMs;
  const over = isNum(expected) && isNum(elapsed) && elapsed > expected;
  const learned = e.learned === true || (e.learned === undefined && isNum(e.samples) && e.samples > 0);
  const basis = !isObj(eta)
    ? ""
    : learned && isNum(e.samples)
      ? `learned from ${esc(fmtCount(e.samples))} cold start${e.samples === 1 ? "" : "s"}`
      : "configured, none seen yet";
  const bar =
    isNum(expected) && expected > 0 && isNum(elapsed)
      ? `<progress${over ? ' class="over"' : ""} max="${esc(expected)}" value="${esc(Math.min(elapsed, expected))}">${esc(fmtMs(elapsed))}</progress>`
      : "";
  const cell = (label: string, field: string, text: string) =>
    `<div><dt>${label}</dt><dd data-field="eta.${field}">${esc(text)}</dd></div>`;
  // Past the expectation `remainingMs` stays at 0; how far past is what the operator wants.
  const remaining = over ? `+${fmtMs(elapsed - expected)}` : fmtMs(e.remainingMs);
  return (
    `<section class="eta${over ? " over" : ""}"><h3>Cold-start ETA <small>${basis}</small></h3>${bar}` +
    `<dl class="trio">${cell("expected", "expectedMs", fmtMs(expected))}${cell("elapsed", "elapsedMs", fmtMs(elapsed))}` +
    `${cell(over ? "overdue" : "remaining", "remainingMs", remaining)}</dl></section>`
  );
}

function renderTarget(name: string, target: unknown): string {
  const t = isObj(target) ? target : {};
  const known = ["ready", "cold", "waking", "paused"];
  const state = typeof t.state === "string" ? t.state : "unknown";
  const cls = known.includes(state) ? state : "unknown";
  const readiness = isObj(t.readiness) ? t.readiness : {};
  const kind = typeof readiness.kind === "string" ? readiness.kind : "readiness source";
  const lede =
    state === "ready"
      ? "Forwarding at once."
      : state === "cold"
        ? "Scaled to zero; the next request wakes it."
        : state === "waking"
          ? `Holding requests until the ${esc(kind)} source says ready${isNum(t.coldForMs) ? `, for <span data-field="coldForMs">${esc(fmtMs(t.coldForMs))}</span> now` : ""}.`
          : state === "paused"
            ? "Autoscaler paused at zero replicas: requests fail fast instead of waiting."
            : "State unknown to this page.";
  const wake = isObj(t.wake) && t.wake.active === true ? t.wake : undefined;
  const chips =
    (wake
      ? `<span class="chip" data-field="wake">wake hold${isNum(wake.remainingMs) ? ` \u00b7 ${esc(fmtMs(wake.remainingMs))} left` : ""}</span>`
      : "") +
    (isObj(t.autoscaler) && t.autoscaler.paused === true
      ? `<span class="chip paused" data-field="autoscaler.paused">autoscaler paused</span>`
      : "");
  // Big number: requests held. `pending` also counts an active admin wake (what KEDA sees).
  const held = isNum(t.held) ? t.held : t.pending;
  // The release window under its cap, and replays in flight under theirs (0 = no bound).
  const release = isObj(t.release) ? t.release : undefined;
  const bound = (n: unknown): string => (isNum(n) && n > 0 ? fmtCount(n) : "no");
  const synced = readiness.synced === true ? "synced" : readiness.synced === false ? "not synced yet" : "";
  return (
    `<article class="card ${cls}" data-target="${esc(name)}" data-state="${esc(state)}">` +
    `<header class="card-head"><h2>${esc(name)}</h2><span class="badge" data-field="state">${esc(state)}</span></header>` +
    `<p class="lede">${lede}${chips ? ` ${chips}` : ""}</p>` +
    `<div class="big">` +
    `<div class="stat${isNum(held) && held > 0 ? " hot" : ""}"><span class="n" data-field="held">${esc(fmtCount(held))}</span><span class="l">held</span></div>` +
    `<div class="stat"><span class="n" data-field="inFlight">${esc(fmtCount(t.inFlight))}</span><span class="l">in flight</span></div>` +
    `<div class="stat minor"><span class="n" data-field="replaying">${esc(fmtCount(t.replaying))}</span><span class="l">replaying${release ? ` of ${esc(bound(release.maxInFlight))} max` : ""}</span></div>` +
    (release
      ? `<div class="stat minor" title="replays that may wait for a response head at once; it grows under release.concurrency and halves on overload"><span class="n" data-field="release.window">${esc(fmtCount(release.window))}</span><span class="l">release window, ${esc(bound(release.cap))} cap</span></div>`
      : "") +
    `<div class="stat minor" title="held, plus one during an admin wake: what KEDA sees"><span class="n" data-field="pending">${esc(fmtCount(t.pending))}</span><span class="l">demand</span></div>` +
    `</div>` +
    renderEta(t.eta) +
    `<section><h3>Last cold starts <small>${esc(renderSparkScale(t.recentColdStarts))}</small></h3>` +
    `${renderSparkline(t.recentColdStarts, t.lastColdStartMs)}</section>` +
    `<section><h3>Readiness <small><span data-field="readiness.kind">${esc(kind)}</span>${synced ? ` \u00b7 ${synced}` : ""}</small></h3>` +
    `${renderFacts(readiness, ["kind", "synced"]) || '<p class="muted">no facts</p>'}</section>` +
    (isObj(t.autoscaler) ? `<section><h3>Autoscaler</h3>${renderFacts(t.autoscaler, [])}</section>` : "") +
    (isObj(t.scale) ? `<section><h3>Scale on demand</h3>${renderFacts(t.scale, [])}</section>` : "") +
    `<section><h3>Outcomes since start</h3>${renderOutcomes(t.outcomes)}</section>` +
    `</article>`
  );
}

function renderCards(snapshot: unknown): string[] {
  const s = isObj(snapshot) ? snapshot : {};
  return isObj(s.targets) ? Object.entries(s.targets).map(([name, t]) => renderTarget(name, t)) : [];
}

/** The cards' container contents, for a snapshot with no target at all too. */
function renderGrid(cards: string[]): string {
  return cards.length ? cards.join("") : `<p class="muted empty">No targets configured.</p>`;
}

/** Process-wide facts: held body bytes against the byte budget, start time, the targets' tally. */
function renderProcess(snapshot: unknown, now: number): string {
  const s = isObj(snapshot) ? snapshot : {};
  const held = s.heldBytes;
  const max = s.maxHeldBytes;
  const meter =
    isNum(held) && isNum(max) && max > 0
      ? `<meter min="0" max="${esc(max)}" low="${esc(max * 0.6)}" high="${esc(max * 0.85)}" optimum="0" value="${esc(Math.min(held, max))}"></meter>`
      : "";
  const started = typeof s.startedAt === "string" ? Date.parse(s.startedAt) : Number.NaN;
  const up = Number.isNaN(started) ? "" : ` <small>up ${esc(fmtMs(now - started))}</small>`;
  const states: Record<string, number> = {};
  const targets = isObj(s.targets) ? Object.values(s.targets) : [];
  for (const t of targets) {
    const st = isObj(t) && typeof t.state === "string" ? t.state : "unknown";
    states[st] = (states[st] ?? 0) + 1;
  }
  const tally = Object.entries(states)
    .map(([st, n]) => `<span class="tally ${esc(st)}">${esc(n)} ${esc(st)}</span>`)
    .join(" ");
  return (
    `<div class="kv"><span class="k">held bodies</span><span class="v"><span data-field="heldBytes">${esc(fmtBytes(held))}</span>` +
    ` <small>of <span data-field="maxHeldBytes">${esc(fmtBytes(max))}</span>` +
    `${isNum(s.refusedOverBudget) && s.refusedOverBudget > 0 ? ` \u00b7 <span class="bad" data-field="refusedOverBudget">${esc(fmtCount(s.refusedOverBudget))} refused</span>` : ""}` +
    `</small></span>${meter}</div>` +
    `<div class="kv"><span class="k">started</span><span class="v"><span data-field="startedAt">${esc(fmtTime(s.startedAt))}</span>${up}</span></div>` +
    `<div class="kv"><span class="k">${targets.length === 1 ? "target" : "targets"}</span><span class="v">${tally || "\u2014"}</span></div>`
  );
}

/** The tab title: what is not ready, so a background tab still tells. */
function renderTitle(snapshot: unknown): string {
  const s = isObj(snapshot) ? snapshot : {};
  const targets = isObj(s.targets) ? Object.values(s.targets) : [];
  const states = targets.map((t) => (isObj(t) && typeof t.state === "string" ? t.state : "unknown"));
  const notReady = ["waking", "paused", "cold", "unknown"]
    .map((st) => [st, states.filter((x) => x === st).length] as const)
    .filter(([, n]) => n > 0)
    .map(([st, n]) => `${n} ${st}`);
  return `coldfront \u00b7 ${notReady.length ? notReady.join(", ") : targets.length ? "all ready" : "no targets"}`;
}

// ---------------------------------------------------------------------------------------------
// The browser half: the refresh loop. It runs only in the browser.
// ---------------------------------------------------------------------------------------------

/**
 * The little of the DOM the refresh loop uses, declared here rather than through lib "dom",
 * which would change the globals (setTimeout, fetch, ...) of the whole Node program.
 */
interface PageElement {
  innerHTML: string;
  outerHTML: string;
  textContent: string | null;
  hidden: boolean;
  readonly children: ArrayLike<PageElement>;
  setAttribute(name: string, value: string): void;
  removeAttribute(name: string): void;
}
declare const document: {
  title: string;
  readonly documentElement: PageElement;
  readonly visibilityState: string;
  querySelector(selector: string): PageElement | null;
  addEventListener(type: "visibilitychange", listener: () => void): void;
};

/**
 * Asks `status` (relative, so the page also works behind a path prefix such as
 * `kubectl proxy`'s service proxy) every refreshMs; redraws only the cards whose HTML changed.
 * On a failed fetch it keeps the last data and shows "stale". A hidden tab stops asking.
 */
function runStatusPage(refreshMs: number): void {
  const root = document.documentElement;
  const grid = document.querySelector("[data-grid]");
  const proc = document.querySelector("[data-process]");
  const fresh = document.querySelector('[data-field="freshness"]');
  const stale = document.querySelector('[data-field="stale"]');
  if (!grid || !proc || !fresh || !stale) return;
  root.setAttribute("data-js", "on");
  let cards: string[] = [];
  let lastOk = 0;
  let running = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async (): Promise<void> => {
    timer = undefined;
    running = true;
    try {
      const res = await fetch("status", {
        cache: "no-store",
        headers: { accept: "application/json" },
        signal: AbortSignal.timeout(Math.max(refreshMs * 3, 5000)),
      });
      if (!res.ok) throw new Error(`status answered ${res.status}`);
      const snapshot: unknown = await res.json();
      const now = Date.now();
      const next = renderCards(snapshot);
      if (next.length > 0 && next.length === cards.length && grid.children.length === cards.length) {
        next.forEach((html, i) => {
          const el = grid.children[i];
          if (el && html !== cards[i]) el.outerHTML = html;
        });
      } else {
        grid.innerHTML = renderGrid(next);
      }
      cards = next;
      proc.innerHTML = renderProcess(snapshot, now);
      document.title = renderTitle(snapshot);
      lastOk = now;
      fresh.textContent = `live \u00b7 ${new Date(now).toLocaleTimeString()}`;
      stale.hidden = true;
      root.removeAttribute("data-stale");
    } catch (err) {
      // Keep the last data on screen; say it is old and why.
      stale.hidden = false;
      stale.setAttribute("title", String(err));
      root.setAttribute("data-stale", "");
      if (lastOk) fresh.textContent = `last update ${new Date(lastOk).toLocaleTimeString()}`;
    } finally {
      running = false;
    }
    if (document.visibilityState !== "hidden") timer = setTimeout(tick, refreshMs);
  };
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !running && timer === undefined) void tick();
  });
  void tick();
}

const VIEW = [
  esc,
  isNum,
  isObj,
  fmtCount,
  fmtMs,
  fmtBytes,
  fmtTime,
  fmtFact,
  renderFacts,
  renderSparkline,
  renderSparkScale,
  renderOutcomes,
  renderEta,
  renderTarget,
  renderCards,
  renderGrid,
  renderProcess,
  renderTitle,
  runStatusPage,
];

const SCRIPT = `"use strict";(() => {\n${VIEW.map(String).join("\n")}\nrunStatusPage(${REFRESH_MS});\n})();`;

const STYLE = `
:root {
  color-scheme: light dark;
  --bg: #f5f6f8; --card: #ffffff; --fg: #16181d; --muted: #5d6472; --line: #e2e5ea; --soft: #f0f2f5;
  --ready: #1a7f37; --ready-bg: #dcf5e3; --cold: #0b63b6; --cold-bg: #dceafa;
  --waking: #9a5b00; --waking-bg: #ffedc2; --paused: #7a3fd1; --paused-bg: #ece2fc;
  --bad: #c2261c; --accent: #0b63b6;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Ubuntu, "DejaVu Sans", sans-serif;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0e1014; --card: #171a20; --fg: #e7e9ee; --muted: #99a2b1; --line: #2a2f38; --soft: #1f232b;
    --ready: #4ccf6e; --ready-bg: #15351f; --cold: #6cb2ff; --cold-bg: #132b45;
    --waking: #f2b33d; --waking-bg: #3a2a0c; --paused: #b592ff; --paused-bg: #2c1f47;
    --bad: #ff7b72; --accent: #6cb2ff;
  }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--fg); }
main { max-width: 1240px; margin: 0 auto; padding: 16px clamp(12px, 3vw, 28px) 32px; }
small, .muted { color: var(--muted); }
.top { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 12px; margin-bottom: 12px; }
.top h1 { margin: 0; font-size: 1.35rem; letter-spacing: -0.01em; }
.top h1 span { color: var(--muted); font-weight: 500; }
.fresh { color: var(--muted); font-size: 0.85rem; }
[data-js] .fresh::before { content: ""; display: inline-block; width: 7px; height: 7px; margin-right: 6px;
  border-radius: 50%; background: var(--ready); vertical-align: 1px; }
[data-stale] .fresh::before { background: var(--bad); }
.stale-badge { font-size: 0.75rem; font-weight: 700; text-transform: uppercase; letter-spacing: 0.06em;
  color: var(--bad); border: 1px solid currentColor; border-radius: 999px; padding: 1px 8px; }
.process { display: flex; flex-wrap: wrap; gap: 8px 28px; padding: 12px 16px; margin-bottom: 16px;
  background: var(--card); border: 1px solid var(--line); border-radius: 12px; }
.kv { display: flex; flex-direction: column; min-width: 0; }
.kv .k { font-size: 0.72rem; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); }
.kv .v { font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.kv meter { appearance: none; width: 180px; max-width: 100%; height: 8px; margin-top: 5px;
  border-radius: 4px; background: var(--soft); }
meter::-webkit-meter-bar { background: var(--soft); border: 0; border-radius: 4px; height: 8px; }
meter::-webkit-meter-optimum-value { background: var(--ready); border-radius: 4px; }
meter::-webkit-meter-suboptimum-value { background: var(--waking); border-radius: 4px; }
meter::-webkit-meter-even-less-good-value { background: var(--bad); border-radius: 4px; }
meter::-moz-meter-bar { background: var(--ready); }
.tally { white-space: nowrap; }
.tally.ready { color: var(--ready); } .tally.cold { color: var(--cold); }
.tally.waking { color: var(--waking); } .tally.paused { color: var(--paused); }
.grid { display: grid; gap: 16px; grid-template-columns: repeat(auto-fill, minmax(min(100%, 22rem), 1fr));
  align-items: start; }
[data-stale] .grid { opacity: 0.6; }
.card { --c: var(--muted); --c-bg: var(--soft); background: var(--card); border: 1px solid var(--line);
  border-top: 4px solid var(--c); border-radius: 12px; padding: 14px 16px 16px; min-width: 0; }
.card.ready { --c: var(--ready); --c-bg: var(--ready-bg); }
.card.cold { --c: var(--cold); --c-bg: var(--cold-bg); }
.card.waking { --c: var(--waking); --c-bg: var(--waking-bg); }
.card.paused { --c: var(--paused); --c-bg: var(--paused-bg); }
.card-head { display: flex; align-items: center; justify-content: space-between; gap: 12px; }
.card-head h2 { margin: 0; font-size: 1.2rem; overflow-wrap: anywhere; }
.badge { flex: none; display: inline-flex; align-items: center; gap: 7px; padding: 3px 12px 3px 10px;
  border-radius: 999px; background: var(--c-bg); color: var(--c); font-weight: 700; font-size: 0.85rem;
  text-transform: uppercase; letter-spacing: 0.06em; }
.badge::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: currentColor; }
.waking .badge::before { animation: pulse 1.2s ease-in-out infinite; }
@keyframes pulse { 50% { opacity: 0.25; } }
@media (prefers-reduced-motion: reduce) { .waking .badge::before { animation: none; } }
.lede { margin: 6px 0 12px; color: var(--muted); font-size: 0.9rem; }
.chip { display: inline-block; font-size: 0.75rem; font-weight: 600; padding: 0 8px; border-radius: 999px;
  background: var(--soft); color: var(--fg); border: 1px solid var(--line); white-space: nowrap; }
.chip.paused { color: var(--paused); }
.big { display: flex; gap: 8px 24px; align-items: flex-end; flex-wrap: wrap; padding: 4px 0 12px;
  border-bottom: 1px solid var(--line); }
.stat { display: flex; flex-direction: column; }
.stat .n { font-size: clamp(2rem, 7vw, 2.6rem); font-weight: 750; line-height: 1.05;
  font-variant-numeric: tabular-nums; }
.stat.hot .n { color: var(--waking); }
.stat.minor .n { font-size: 1.35rem; color: var(--muted); }
.stat .l { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); }
section { padding-top: 10px; }
h3 { margin: 0 0 6px; font-size: 0.78rem; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted);
  font-weight: 700; display: flex; flex-wrap: wrap; justify-content: space-between; gap: 2px 8px; }
h3 small { text-transform: none; letter-spacing: 0; font-weight: 500; }
h3 small span { color: var(--fg); font-weight: 600; }
p { margin: 0; }
dl { margin: 0; }
dd { margin: 0; }
.trio { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; }
.trio dt { font-size: 0.75rem; color: var(--muted); }
.trio dd { font-weight: 650; font-variant-numeric: tabular-nums; }
.eta.over .trio div:last-child dd { color: var(--bad); }
progress { appearance: none; width: 100%; height: 8px; border: 0; border-radius: 4px; margin: 2px 0 8px;
  background: var(--soft); color: var(--waking); overflow: hidden; display: block; }
progress::-webkit-progress-bar { background: var(--soft); border-radius: 4px; }
progress::-webkit-progress-value { background: var(--waking); border-radius: 4px; }
progress::-moz-progress-bar { background: var(--waking); }
progress.over::-webkit-progress-value { background: var(--bad); }
progress.over::-moz-progress-bar { background: var(--bad); }
.spark-row { display: flex; align-items: center; gap: 12px; }
.spark { flex: 1 1 auto; min-width: 0; width: 100%; height: auto; max-height: 64px; overflow: visible; }
.spark polyline { fill: none; stroke: var(--accent); stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
.spark .area { fill: var(--accent); opacity: 0.12; }
.spark .base { stroke: var(--line); stroke-width: 1; }
.spark .base + .base { stroke-dasharray: 3 4; }
.spark-none { flex: 1 1 auto; }
.spark circle { fill: var(--card); stroke: var(--accent); stroke-width: 1.5; }
.spark circle.last { fill: var(--accent); }
.spark-last { flex: none; display: flex; flex-direction: column; align-items: flex-end; line-height: 1.2; }
.spark-last b { font-size: 1.1rem; font-variant-numeric: tabular-nums; }
.spark-last small { font-size: 0.72rem; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; font-size: 0.85rem; }
.facts div { display: contents; }
.facts dt { color: var(--muted); }
.facts dd { overflow-wrap: anywhere; min-width: 0; font-variant-numeric: tabular-nums; }
.outcomes { width: 100%; border-collapse: collapse; font-size: 0.85rem; }
.outcomes tbody { display: grid; grid-template-columns: repeat(auto-fill, minmax(8.75rem, 1fr)); column-gap: 14px; }
.outcomes tr { display: flex; justify-content: space-between; gap: 8px; border-bottom: 1px dotted var(--line);
  padding: 2px 0; min-width: 0; }
.outcomes th { font-weight: 500; text-align: left; overflow-wrap: anywhere; min-width: 0; }
.outcomes td { font-weight: 650; font-variant-numeric: tabular-nums; text-align: right; }
.outcomes tr.zero { color: var(--muted); }
.outcomes tr.zero td { font-weight: 500; }
.outcomes tr.bad, .bad { color: var(--bad); }
footer { margin-top: 20px; font-size: 0.8rem; color: var(--muted); }
footer a { color: inherit; }
.empty { padding: 24px 0; }
`;

for (const [what, text] of [
  ["script", SCRIPT],
  ["style", STYLE],
] as const) {
  // An inline element ends at the first "</script" or "</style", whatever quotes surround it.
  if (text.toLowerCase().includes(`</${what}`)) throw new Error(`status page ${what} contains </${what}`);
}

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/**
 * Headers for the page: never cached (it is live state), and a CSP that lets only this page's
 * own inline script and style run (by hash, since neither changes per request) and lets it
 * fetch only its own origin.
 */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  "content-security-policy": [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * The whole page for one `/status` snapshot, complete without JavaScript.
 *
 * @example
 * app.get("/", (_req, reply) =>
 *   reply.type("text/html; charset=utf-8").headers(STATUS_PAGE_HEADERS).send(renderStatusPage(status())));
 */
export function renderStatusPage(status: StatusSnapshot, now: Date = new Date()): string {
  const cards = renderCards(status);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="robots" content="noindex">
<noscript><meta http-equiv="refresh" content="10"></noscript>
<title>${esc(renderTitle(status))}</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<main>
<header class="top">
<h1>coldfront <span>status</span></h1>
<span class="fresh" data-field="freshness">snapshot ${esc(fmtTime(now.toISOString()))}</span>
<span class="stale-badge" data-field="stale" hidden>stale</span>
<noscript><span class="fresh">JavaScript is off: this page reloads every 10 s.</span></noscript>
</header>
<section class="process" data-process>${renderProcess(status, now.getTime())}</section>
<div class="grid" data-grid>${renderGrid(cards)}</div>
<footer>Refreshes from <a href="status">/status</a> every ${REFRESH_MS / 1000} s \u00b7 <a href="metrics">/metrics</a> \u00b7 <a href="readyz">/readyz</a></footer>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
