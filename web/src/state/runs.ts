// The farm's history of runs as the Runs section needs it: a run's kind and state in words,
// the pages of the list merged with the polled newest page, two runs' figures side by side
// with their differences, their per-second timelines aligned at their starts, and the
// events in words. Plain functions over the generated messages.
import { RunKind, type FarmEvent, type GetRunResponse, type LatencySummary, type LoadSecond, type LoadTestResult, type RunSummary } from "../gen/farm/v1/farm_pb";
import { timelineSeries } from "./scenario";

// ── a run in a line ──────────────────────────────────────────────────────────

export type RunKindName = "load test" | "scenario" | "run";

export function kindName(kind: RunKind): RunKindName {
  return kind === RunKind.LOAD_TEST ? "load test" : kind === RunKind.SCENARIO ? "scenario" : "run";
}

/** Load tests end "finished" or "cancelled", scenarios by their verdict; "interrupted" is a
 * run the controller was stopped during. */
export type HistoryState = "running" | "finished" | "cancelled" | "passed" | "failed" | "aborted" | "error" | "interrupted" | "unknown";

const STATES: readonly HistoryState[] = ["running", "finished", "cancelled", "passed", "failed", "aborted", "error", "interrupted"];

export function historyState(state: string): HistoryState {
  const s = state.trim().toLowerCase();
  return (STATES as readonly string[]).includes(s) ? (s as HistoryState) : "unknown";
}

/** Whether one run comes before another in the list: newest first, then the higher id. */
export function newerFirst(a: RunSummary, b: RunSummary): number {
  const d = Number(b.startedAtMs) - Number(a.startedAtMs);
  if (d !== 0) return d;
  return idNumber(b.runId) - idNumber(a.runId) || (a.runId < b.runId ? 1 : a.runId > b.runId ? -1 : 0);
}

function idNumber(id: string): number {
  const m = /(\d+)$/.exec(id);
  return m ? Number(m[1]) : 0;
}

/**
 * The list after a fresh newest page: that page as it is now (states and figures of running
 * runs move), then the runs of older pages already loaded that are older than its last one.
 * An empty newest page means the history is empty.
 */
export function mergeRuns(loaded: readonly RunSummary[], fresh: readonly RunSummary[]): RunSummary[] {
  if (fresh.length === 0) return [];
  const ids = new Set(fresh.map((r) => r.runId));
  const last = fresh[fresh.length - 1];
  return [...fresh, ...loaded.filter((r) => !ids.has(r.runId) && newerFirst(last, r) < 0)];
}

/** The list with an older page added at its end, without runs listed already. */
export function appendRuns(loaded: readonly RunSummary[], older: readonly RunSummary[]): RunSummary[] {
  const ids = new Set(loaded.map((r) => r.runId));
  return [...loaded, ...older.filter((r) => !ids.has(r.runId))];
}

/**
 * Two runs chosen for the comparison, the last two clicked: choosing a third lets the
 * earlier of the two go; choosing one again takes it out.
 */
export function toggleChoice(chosen: readonly string[], runId: string): string[] {
  if (chosen.includes(runId)) return chosen.filter((id) => id !== runId);
  return [...chosen, runId].slice(-2);
}

// ── a run's figures ──────────────────────────────────────────────────────────

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface RunFigures {
  requests: number;
  failures: number;
  /** Failed requests in percent of the requests; NaN without requests. */
  errorRate: number;
  /** Requests per second over the run. */
  rps: number;
  /** Seconds the load ran (a scenario's load, not its checks); NaN while unknown. */
  durationS: number;
  /** NaN where unknown (a summary has them all; p90 and p99.9 come with the whole run). */
  latency: Percentiles;
  /** The per-second timeline; empty for a run without one. */
  timeline: readonly LoadSecond[];
}

function percentiles(l: LatencySummary | undefined): Percentiles {
  if (!l) return { p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN };
  return { p50: l.p50Ms, p90: l.p90Ms, p99: l.p99Ms, p999: l.p999Ms, max: l.maxMs };
}

/** The load test's result or the scenario's load, from a whole run. */
export function runResult(run: GetRunResponse["run"] | undefined): LoadTestResult | undefined {
  if (!run) return undefined;
  if (run.case === "loadTest") return run.value.result;
  if (run.case === "scenario") return run.value.load;
  return undefined;
}

/**
 * A run's figures: from the whole run where it has been fetched (its load's result), else
 * from its line in the list.
 */
export function runFigures(summary: RunSummary, run?: GetRunResponse["run"]): RunFigures {
  const result = runResult(run);
  const requests = Number(result?.requests ?? summary.requests);
  const failures = Number(result?.failures ?? summary.failures);
  const started = Number(summary.startedAtMs);
  const ended = Number(summary.endedAtMs);
  const elapsed = result?.elapsedSeconds ?? 0;
  return {
    requests,
    failures,
    errorRate: requests > 0 ? (failures / requests) * 100 : NaN,
    rps: result ? result.requestsPerSecond : summary.requestsPerSecond,
    durationS: elapsed > 0 ? elapsed : ended > started && started > 0 ? (ended - started) / 1000 : NaN,
    latency: percentiles(result?.latency ?? summary.latency),
    timeline: result?.timeline ?? [],
  };
}

// ── two runs side by side ────────────────────────────────────────────────────

export type Better = "higher" | "lower" | "neither";
export type Tone = "better" | "worse" | "same" | "none";
export type FigureUnit = "ms" | "rps" | "count" | "percent" | "seconds";

export interface Difference {
  /** B against A: percent of A, or percentage points for a rate; null where not meaningful. */
  value: number | null;
  /** "+12.3 %", "-4.0 %", "+0.50 pp", "0.0 %", "–". */
  text: string;
  tone: Tone;
}

export interface CompareRow {
  key: "p50" | "p90" | "p99" | "p999" | "max" | "rps" | "requests" | "failures" | "errorRate" | "duration";
  label: string;
  unit: FigureUnit;
  a: number;
  b: number;
  diff: Difference;
}

/** Changes smaller than these read as the same: 1 % of A, or 0.01 percentage points. */
const SAME_PERCENT = 1;
const SAME_POINTS = 0.01;

/** (b − a) in percent of a; 0 when both are 0; null when either is unknown or a is 0 and b is not. */
export function relativeChange(a: number, b: number): number | null {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return null;
  if (a === b) return 0;
  if (a === 0) return null;
  return ((b - a) / Math.abs(a)) * 100;
}

function signed(v: number, digits: number): string {
  const text = Math.abs(v).toFixed(digits);
  if (Number(text) === 0) return (0).toFixed(digits);
  return `${v > 0 ? "+" : "-"}${text}`;
}

function tone(value: number | null, same: number, better: Better): Tone {
  if (value === null) return "none";
  if (Math.abs(value) < same) return "same";
  if (better === "neither") return "none";
  return (value > 0) === (better === "higher") ? "better" : "worse";
}

/** B against A in percent of A: "+12.3 %". */
export function percentDifference(a: number, b: number, better: Better): Difference {
  const value = relativeChange(a, b);
  return { value, text: value === null ? "–" : `${signed(value, 1)} %`, tone: tone(value, SAME_PERCENT, better) };
}

/** B against A for two rates in percent, in percentage points: "+0.50 pp". */
export function pointsDifference(a: number, b: number, better: Better): Difference {
  const value = Number.isFinite(a) && Number.isFinite(b) ? b - a : null;
  return { value, text: value === null ? "–" : `${signed(value, 2)} pp`, tone: tone(value, SAME_POINTS, better) };
}

/** The comparison's rows: latency percentiles, throughput, errors and their rate, duration. */
export function compareRows(a: RunFigures, b: RunFigures): CompareRow[] {
  const row = (key: CompareRow["key"], label: string, unit: FigureUnit, va: number, vb: number, better: Better): CompareRow => ({
    key,
    label,
    unit,
    a: va,
    b: vb,
    diff: unit === "percent" ? pointsDifference(va, vb, better) : percentDifference(va, vb, better),
  });
  return [
    row("p50", "p50", "ms", a.latency.p50, b.latency.p50, "lower"),
    row("p90", "p90", "ms", a.latency.p90, b.latency.p90, "lower"),
    row("p99", "p99", "ms", a.latency.p99, b.latency.p99, "lower"),
    row("p999", "p99.9", "ms", a.latency.p999, b.latency.p999, "lower"),
    row("max", "max", "ms", a.latency.max, b.latency.max, "lower"),
    row("rps", "Throughput", "rps", a.rps, b.rps, "higher"),
    row("requests", "Requests", "count", a.requests, b.requests, "neither"),
    row("failures", "Errors", "count", a.failures, b.failures, "lower"),
    row("errorRate", "Error rate", "percent", a.errorRate, b.errorRate, "lower"),
    row("duration", "Duration", "seconds", a.durationS, b.durationS, "neither"),
  ];
}

/** The older of two runs is the baseline (A), the newer the one compared with it (B). */
export function baselineFirst(x: RunSummary, y: RunSummary): [RunSummary, RunSummary] {
  return newerFirst(x, y) > 0 ? [x, y] : [y, x];
}

// ── two timelines aligned at their starts ────────────────────────────────────

export interface AlignedTimelines {
  /** Milliseconds from the runs' starts, each second's middle. */
  times: number[];
  /** Per run: requests per second, and p99 (NaN for a second without an answer); both NaN
   * after that run's last second, so its lines stop where it ended. */
  a: { rps: number[]; p99: number[] };
  b: { rps: number[]; p99: number[] };
  /** Seconds on the axis: the longer run's. */
  seconds: number;
}

/**
 * Both timelines from their second 0 on one axis: dense (an empty second inside a run is 0
 * requests), provisional seconds left out as on a run's own charts.
 */
export function alignTimelines(a: readonly LoadSecond[], b: readonly LoadSecond[]): AlignedTimelines {
  const sa = timelineSeries(a, 0);
  const sb = timelineSeries(b, 0);
  const seconds = Math.max(sa.times.length, sb.times.length);
  const pad = (v: number[]) => (v.length >= seconds ? v : [...v, ...new Array<number>(seconds - v.length).fill(NaN)]);
  return {
    times: Array.from({ length: seconds }, (_, k) => k * 1000 + 500),
    a: { rps: pad(sa.requests), p99: pad(sa.p99) },
    b: { rps: pad(sb.requests), p99: pad(sb.p99) },
    seconds,
  };
}

// ── events ───────────────────────────────────────────────────────────────────

export type EventTone = "ok" | "warn" | "bad" | "muted" | "info";

const STATUS_TONE: Record<string, EventTone> = { healthy: "ok", degraded: "warn", unreachable: "bad", stopped: "muted", starting: "info" };

/** A status change by the status it went to ("healthy -> unreachable: …"); the rest by kind. */
export function eventTone(e: Pick<FarmEvent, "kind" | "detail">): EventTone {
  switch (e.kind) {
    case "status": {
      const to = /->\s*([a-z]+)/i.exec(e.detail)?.[1]?.toLowerCase() ?? "";
      return STATUS_TONE[to] ?? "info";
    }
    case "fault_set":
      return "warn";
    case "removed":
      return "muted";
    case "fault_cleared":
    case "added":
    case "agent_connected":
      return "ok";
    default:
      return "info";
  }
}

/** "status", "fault_set" → "Status", "Fault set". */
export function eventKindText(kind: string): string {
  const words = kind.replace(/_/g, " ").trim();
  return words ? words[0].toUpperCase() + words.slice(1) : "Event";
}

export function eventSubject(serverId: number): string {
  return serverId === 0 ? "farm" : `server-${serverId}`;
}

// ── times ────────────────────────────────────────────────────────────────────

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "14:03:07" today (local time), "2 Dec 14:03:07" before; the history outlives days. */
export function stamp(t: number, now: number): string {
  if (!(t > 0)) return "–";
  const d = new Date(t);
  const time = d.toLocaleTimeString("en-GB", { hour12: false });
  return new Date(now).toDateString() === d.toDateString() ? time : `${d.getDate()} ${MONTHS[d.getMonth()]} ${time}`;
}
