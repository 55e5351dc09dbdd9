/** The results file: machine facts, the goals table, then one Markdown table per scenario. */
import type { Generator } from "./load.js";
import { ratio } from "./stats.js";
import type { Workspace } from "./systems.js";

export interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

export interface Section {
  readonly title: string;
  /** What is measured and how, one paragraph. */
  readonly about: string;
  readonly tables: readonly Table[];
  readonly notes: readonly string[];
}

/** One goal of bench/README.md "Goals", checked against this run. */
export interface Check {
  /** Where the goal comes from: the "from" column of bench/README.md "Goals". */
  readonly source: string;
  readonly target: string;
  readonly goal: string;
  readonly measured: string;
  /** undefined: not measurable in this run (a system skipped, a scenario failed). */
  readonly met: boolean | undefined;
}

export interface ScenarioResult {
  readonly section: Section;
  readonly checks: readonly Check[];
}

/**
 * The goals table's aside on Node's floor, after coldfront's figure: node-pipe (a byte pipe in
 * Node, the floor of any Node.js proxy) by default, "; Node's floor (node-pipe) 1.44x", or
 * `node:http hold` for holding; nothing when it did not run. Goals are met or not on coldfront's
 * figures alone.
 */
export function nodeFloor(figure: string | undefined, system = "node-pipe"): string {
  return figure === undefined || figure === "—" ? "" : `; Node's floor (${system}) ${figure}`;
}

/**
 * A goals row of coldfront's figure against nginx's, met at most `factor` times it: the ratio,
 * both figures as `show` gives them in `unit`, and node-pipe's ratio beside them (nodeFloor).
 */
export function vsNginx<T>(
  row: {
    readonly source: string;
    readonly target: string;
    readonly goal: string;
    readonly factor: number;
    readonly unit: string;
  },
  of: (x: T) => number,
  show: (x: T) => string,
  systems: { readonly cf: T | undefined; readonly nginx: T | undefined; readonly pipe: T | undefined },
): Check {
  const { cf, nginx, pipe } = systems;
  return {
    source: row.source,
    target: row.target,
    goal: row.goal,
    measured:
      cf && nginx
        ? `${ratio(of(cf), of(nginx))} (${show(cf)} vs ${show(nginx)} ${row.unit})${nodeFloor(ratio(pipe && of(pipe), of(nginx)))}`
        : "—",
    met: cf && nginx ? of(cf) <= row.factor * of(nginx) : undefined,
  };
}

/** What every scenario gets from the harness. */
export interface Context {
  readonly quick: boolean;
  /** `--held`: the hold-capacity sizes instead of the defaults. */
  readonly held?: readonly number[];
  readonly ws: Workspace;
  /** The warm scenarios' load generator. */
  readonly generator: Generator;
  /** Progress on stderr: the run is long and the results come at the end. */
  readonly log: (message: string) => void;
}

/** The five leading columns of every table (DESIGN.md "Benchmarks"); extra columns follow. */
export const LEAD = (what: string) =>
  [
    "system",
    "req/s",
    `p50 ms${what ? ` (${what})` : ""}`,
    `p99 ms${what ? ` (${what})` : ""}`,
    "req/s vs direct",
    "req/s vs nginx",
  ] as const;

function escapeCell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export function markdownTable(t: Table): string {
  const lines = [
    `| ${t.header.map(escapeCell).join(" | ")} |`,
    `| ${t.header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...t.rows.map((r) => `| ${r.map(escapeCell).join(" | ")} |`),
  ];
  return lines.join("\n");
}

export function renderSection(s: Section): string {
  const parts = [`## ${s.title}`, s.about, ...s.tables.map(markdownTable)];
  if (s.notes.length > 0) parts.push(s.notes.map((n) => `- ${n}`).join("\n"));
  return parts.join("\n\n");
}

export function renderChecks(checks: readonly Check[]): string {
  return markdownTable({
    header: ["target", "source", "goal", "measured", "met"],
    rows: checks.map((c) => [
      c.target,
      c.source,
      c.goal,
      c.measured,
      c.met === undefined ? "n/a" : c.met ? "yes" : "**no**",
    ]),
  });
}

/** A section for a scenario that threw: the run goes on, and the file says what broke. */
export function failedSection(title: string, err: unknown): Section {
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return {
    title,
    about: "This scenario failed; the error follows.",
    tables: [],
    notes: [`\`${message.split("\n").slice(0, 6).join(" ⏎ ")}\``],
  };
}
