/**
 * The HTML status page on the admin port (DESIGN.md "Admin surface", `GET /`): its server
 * render and headers, and, in Debian's chromium driven by playwright-core, a whole cold start
 * seen through it with JavaScript on and off.
 */

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { describe, expect, test } from "vitest";
import { renderStatusPage, type StatusSnapshot } from "../../src/admin/status-page.js";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";

const defer = useCleanups();

const CHROMIUM = "/usr/bin/chromium";
const NO_CHROMIUM = `${CHROMIUM} is missing (Debian package chromium; .ci/run installs it)`;
const SHOTS = "test-results";

/** Headless Debian chromium; the flags keep it off the network this machine does not have. */
async function launch(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  defer(() => browser.close());
  return browser;
}

/** A page that records every console error and uncaught exception, for a final assertion. */
async function openPage(context: BrowserContext, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  return { page, errors };
}

type Fields = Record<string, string>;

/** Every data-field of one target's card, read in one go so no refresh lands mid-read. */
async function readCard(page: Page, target: string): Promise<Fields | undefined> {
  const card = page.locator(`[data-target="${target}"]`);
  if ((await card.count()) !== 1) return undefined;
  return card.evaluate((el) => {
    const out: Record<string, string> = {};
    for (const f of el.querySelectorAll("[data-field]")) out[f.getAttribute("data-field")] = f.textContent;
    for (const f of el.querySelectorAll("[data-outcome] td"))
      out[`outcomes.${f.parentElement.getAttribute("data-outcome")}`] = f.textContent;
    const spark = el.querySelector('[data-field="recentColdStarts"]');
    out["recentColdStarts.count"] = spark?.getAttribute("data-count") ?? "0";
    return out;
  });
}

interface Target {
  state: string;
  held: number;
  pending: number;
  inFlight: number;
  replaying: number;
  release?: { window: number };
  eta?: { expectedMs: number | null };
  recentColdStarts?: unknown[];
  outcomes?: Record<string, number>;
  readiness: { kind: string };
}

async function status(adminUrl: string): Promise<{ targets: Record<string, Target> }> {
  return (await (await fetch(`${adminUrl}/status`)).json()) as { targets: Record<string, Target> };
}

/** Where the card and the /status target disagree; empty when they agree. */
function disagreement(card: Fields, t: Target): string[] {
  const diffs: string[] = [];
  const same = (field: string, want: string) => {
    if (card[field] !== want) diffs.push(`${field}: page ${card[field]} vs /status ${want}`);
  };
  same("state", t.state);
  same("held", String(t.held));
  same("pending", String(t.pending));
  same("inFlight", String(t.inFlight));
  same("replaying", String(t.replaying));
  if (t.release !== undefined) same("release.window", String(t.release.window));
  same("readiness.kind", t.readiness.kind);
  same("recentColdStarts.count", String(t.recentColdStarts?.length ?? 0));
  for (const [outcome, n] of Object.entries(t.outcomes ?? {})) same(`outcomes.${outcome}`, String(n));
  // The ETA is shown exactly when /status has one.
  if ((card["eta.expectedMs"] !== "\u2014") !== (typeof t.eta?.expectedMs === "number"))
    diffs.push(`eta.expectedMs: page ${card["eta.expectedMs"]} vs /status ${t.eta?.expectedMs}`);
  return diffs;
}

/**
 * Polls the page and /status until they agree with each other and /status satisfies `want`
 * (bounded: a page that stops refreshing fails here with the last difference).
 */
async function agree(page: Page, adminUrl: string, want: (t: Target) => boolean, what: string) {
  let last = "nothing read yet";
  try {
    await waitFor(
      async () => {
        const card = await readCard(page, "llama");
        const t = (await status(adminUrl)).targets.llama;
        if (!card || !t) {
          last = "no card or no target";
          return false;
        }
        const diffs = disagreement(card, t);
        last = diffs.length ? diffs.join("; ") : `/status not yet ${what}: ${JSON.stringify(t)}`;
        return diffs.length === 0 && want(t);
      },
      what,
      15_000,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last: ${last}`);
  }
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("base64");

describe("status page: server render", () => {
  test("GET / is HTML, never cached, with a CSP that admits exactly its inline script and style", async () => {
    const { app } = await startColdTarget(defer);
    const res = await fetch(`${app.adminUrl}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const html = await res.text();
    const csp = res.headers.get("content-security-policy") ?? "";
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)?.[1] ?? "";
    const style = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? "";
    expect(script.length).toBeGreaterThan(0);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain(`script-src 'sha256-${sha256(script)}'`);
    expect(csp).toContain(`style-src 'sha256-${sha256(style)}'`);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(html).toContain('<meta name="color-scheme" content="light dark">');
    expect(html).toContain('data-target="llama"');
  });

  test("escapes every string from the snapshot and shows a missing field as —", () => {
    const evil = `<img src=x onerror="alert(1)">&'`;
    const snapshot = {
      startedAt: "2026-11-01T12:00:00.000Z",
      targets: {
        [evil]: {
          state: evil,
          ready: false,
          pending: 2,
          inFlight: 0,
          replaying: 0,
          coldForMs: null,
          lastColdStartMs: null,
          recentColdStarts: [{ at: evil, ms: 1200 }],
          outcomes: { [evil]: 1 },
          readiness: { kind: evil, synced: true, lastError: `</script><script>alert(2)</script>` },
        },
      },
    } as unknown as StatusSnapshot;
    const html = renderStatusPage(snapshot);
    const body = html.slice(0, html.indexOf("<script>"));
    expect(body).not.toContain("<img");
    expect(body).not.toContain("<script");
    expect(body).toContain("&#60;img src=x onerror=&#34;alert(1)&#34;&#62;&#38;&#39;");
    expect(body).toContain("&#60;/script&#62;&#60;script&#62;alert(2)");
    // This snapshot has no held bytes, no ETA: each shows as —.
    expect(body).toMatch(/data-field="heldBytes">\u2014</);
    expect(body).toMatch(/data-field="eta.expectedMs">\u2014</);
    expect(html.match(/<script>/g)).toHaveLength(1);
  });
});

describe("status page in a browser", () => {
  test("a cold start: cold → waking (held N) → ready, the page agreeing with /status; also with JavaScript off", async (ctx) => {
    ctx.skip(!existsSync(CHROMIUM), NO_CHROMIUM);
    const { up, app } = await startColdTarget(defer, { extra: { hold: { expectedColdStart: "20s" } } });
    const browser = await launch();
    const context = await browser.newContext({
      viewport: { width: 1280, height: 900 },
      colorScheme: "light",
    });
    const { page, errors } = await openPage(context, `${app.adminUrl}/`);
    const cold = (t: Target) => t.state === "cold" && t.held === 0;
    await agree(page, app.adminUrl, cold, "cold");
    // The page fetches by itself: JavaScript is on and the CSP let the script run.
    expect(await page.locator("html").getAttribute("data-js")).toBe("on");

    const N = 3;
    const send = () =>
      Array.from({ length: N }, (_, i) => {
        const p = fetch(`${app.clientUrl}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ id: `r${i}` }),
        }).then(async (r) => {
          await r.text();
          return r.status;
        });
        p.catch(() => {}); // answered 503 shutting_down by the cleanup if the test fails first
        return p;
      });

    // First cold start.
    let held = send();
    const waking = (t: Target) => t.state === "waking" && t.held === N && t.inFlight === 0;
    await agree(page, app.adminUrl, waking, `waking with ${N} held`);
    await up.start();
    expect(await Promise.all(held)).toEqual(Array(N).fill(200));
    const ready = (runs: number) => (t: Target) =>
      t.state === "ready" &&
      t.held === 0 &&
      t.inFlight === 0 &&
      t.outcomes?.replayed === N * runs &&
      t.recentColdStarts?.length === runs;
    await agree(page, app.adminUrl, ready(1), "ready after one cold start");

    // Scaled to zero again, then a second cold start: now the sparkline and the learned ETA have
    // a sample, which is the state worth a screenshot.
    await up.stop();
    await agree(page, app.adminUrl, cold, "cold again");
    held = send();
    await agree(page, app.adminUrl, waking, `waking again with ${N} held`);
    const card = await readCard(page, "llama");
    expect(card?.["eta.elapsedMs"]).not.toBe("\u2014");
    expect(card?.["recentColdStarts.count"]).toBe("1");

    await mkdir(SHOTS, { recursive: true });
    await page.screenshot({ path: `${SHOTS}/status-page.png`, fullPage: true });
    const phone = await browser.newContext({
      viewport: { width: 375, height: 812 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      colorScheme: "dark",
    });
    const small = await openPage(phone, `${app.adminUrl}/`);
    await agree(small.page, app.adminUrl, waking, "waking on a phone");
    // README: no horizontal scroll at 375 px.
    const widths = await small.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]");
    expect((widths as number[])[0]).toBeLessThanOrEqual((widths as number[])[1] as number);
    await small.page.screenshot({ path: `${SHOTS}/status-page-phone.png`, fullPage: true });

    // JavaScript off: the server render alone carries the state and the counts.
    const noJs = await browser.newContext({ javaScriptEnabled: false });
    const off = await openPage(noJs, `${app.adminUrl}/`);
    expect(await off.page.locator("html").getAttribute("data-js")).toBeNull();
    const offCard = await readCard(off.page, "llama");
    const now = (await status(app.adminUrl)).targets.llama as Target;
    expect(offCard).toBeDefined();
    expect(disagreement(offCard as Fields, now)).toEqual([]);
    expect(offCard?.state).toBe("waking");
    expect(offCard?.held).toBe(String(N));

    await up.start();
    expect(await Promise.all(held)).toEqual(Array(N).fill(200));
    await agree(page, app.adminUrl, ready(2), "ready after two cold starts");
    expect(await page.locator('[data-field="stale"]').isHidden()).toBe(true);
    expect([...errors, ...small.errors, ...off.errors]).toEqual([]);
  });

  test("the browser render escapes /status strings, keeps the last data and says stale when /status fails", async (ctx) => {
    ctx.skip(!existsSync(CHROMIUM), NO_CHROMIUM);
    const { app } = await startColdTarget(defer);
    const browser = await launch();
    const context = await browser.newContext();
    const evil = `<img src=x onerror="document.title='owned'">`;
    let fail = false;
    // Stands in for /status: first a snapshot with hostile strings and fields missing, then errors.
    await context.route(`${app.adminUrl}/status`, (route) =>
      fail
        ? route.abort("connectionrefused")
        : route.fulfill({
            contentType: "application/json",
            body: JSON.stringify({
              startedAt: new Date().toISOString(),
              targets: {
                llama: {
                  state: "waking",
                  ready: false,
                  pending: 7,
                  held: 7,
                  inFlight: 1,
                  replaying: 0,
                  outcomes: { [evil]: 2 },
                  readiness: { kind: "probe", synced: true, lastError: evil },
                },
                [evil]: { state: "cold", readiness: { kind: evil } },
              },
            }),
          }),
    );
    const { page, errors } = await openPage(context, `${app.adminUrl}/`);
    await waitFor(async () => (await readCard(page, "llama"))?.held === "7", "the client render");
    expect(await page.locator("img").count()).toBe(0);
    expect(await page.locator('[data-fact="lastError"]').textContent()).toBe(evil);
    expect(await page.locator("h2").allTextContents()).toEqual(["llama", evil]);
    const card = (await readCard(page, "llama")) as Fields;
    expect(card["eta.expectedMs"]).toBe("\u2014");
    expect(card.heldBytes).toBeUndefined(); // process-wide, not in the card
    expect(await page.locator('[data-field="heldBytes"]').textContent()).toBe("\u2014");

    fail = true;
    await waitFor(() => page.locator('[data-field="stale"]').isVisible(), "the stale marker");
    expect((await readCard(page, "llama"))?.held).toBe("7");
    expect(await page.title()).not.toBe("owned");
    // The aborted fetches are the only errors the page may log.
    expect(errors.filter((e) => !e.includes("net::ERR_CONNECTION_REFUSED"))).toEqual([]);
  });
});
