// Scenario runs as the views need them: a run's state and verdict counts, its verdicts in
// words (provisional until final), its load phases and faults as bands on a time axis (the
// scenario's own charts and the farm's), the band geometry within a chart's window, and the
// per-second timeline as chart series. Plain functions over the generated messages.
import { ScenarioState, type LoadSecond, type ScenarioReport, type ScenarioVerdict } from "../gen/farm/v1/farm_pb";

// ── state and verdicts ───────────────────────────────────────────────────────

export type RunState = "running" | "passed" | "failed" | "aborted" | "error" | "unknown";

const STATE_NAMES: Record<number, RunState> = {
  [ScenarioState.RUNNING]: "running",
  [ScenarioState.PASSED]: "passed",
  [ScenarioState.FAILED]: "failed",
  [ScenarioState.ABORTED]: "aborted",
  [ScenarioState.ERROR]: "error",
};

export function runState(state: ScenarioState): RunState {
  return STATE_NAMES[state] ?? "unknown";
}

export interface VerdictCounts {
  passed: number;
  failed: number;
  /** Of those, the ones not final yet (the run goes on). */
  provisional: number;
}

export function verdictCounts(verdicts: readonly ScenarioVerdict[]): VerdictCounts {
  const c = { passed: 0, failed: 0, provisional: 0 };
  for (const v of verdicts) {
    if (v.passed) c.passed++;
    else c.failed++;
    if (!v.final) c.provisional++;
  }
  return c;
}

/** "passed" and "failed" are final; "passing" and "failing" may still change. */
export type VerdictStatus = "passed" | "failed" | "passing" | "failing";

export interface VerdictView {
  assertion: string;
  line: number;
  status: VerdictStatus;
  passed: boolean;
  final: boolean;
  observed: string;
  threshold: string;
  detail: string;
}

export function verdictView(v: ScenarioVerdict): VerdictView {
  const unit = verdictUnit(v.assertion);
  return {
    assertion: v.assertion,
    line: v.line,
    status: v.final ? (v.passed ? "passed" : "failed") : v.passed ? "passing" : "failing",
    passed: v.passed,
    final: v.final,
    // A recovery not seen yet while the run goes on is not "never" (yet).
    observed: unit === "seconds" && v.observed < 0 && !v.final ? "not yet" : formatFigure(v.observed, unit, true),
    threshold: formatFigure(v.threshold, unit, false),
    detail: v.detail,
  };
}

export type Unit = "ms" | "ratio" | "rps" | "seconds" | "number";

/**
 * The unit of an assertion's figures, from its metric: latency in milliseconds, an error
 * rate as a ratio, throughput in requests per second, a recovery in seconds.
 */
export function verdictUnit(assertion: string): Unit {
  const metric = assertion.trim().split(/[\s<>=!]/)[0].toLowerCase();
  if (metric.startsWith("latency")) return "ms";
  if (metric.includes("recover")) return "seconds";
  if (metric.includes("error") || metric.includes("success") || metric.includes("ratio")) return "ratio";
  if (metric.includes("throughput") || metric.includes("rps") || metric.includes("per_second") || metric.includes("rate")) return "rps";
  return "number";
}

function significant(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  return String(Number(v.toPrecision(a < 0.01 ? 2 : 4)));
}

/** A verdict's figure in its unit: "412 ms", "1.25%", "48.5 req/s", "3.2 s", "never". */
export function formatFigure(v: number, unit: Unit, observed = true): string {
  if (!Number.isFinite(v)) return "–";
  switch (unit) {
    case "ms":
      return `${significant(v)} ms`;
    case "ratio":
      return `${significant(v * 100)}%`;
    case "rps":
      return `${significant(v)} req/s`;
    case "seconds":
      return observed && v < 0 ? "never" : `${significant(v)} s`;
    default:
      return significant(v);
  }
}

// ── bands: phases and faults in time ─────────────────────────────────────────

export interface Band {
  /** Unique among a farm's runs: run id, kind and name. */
  key: string;
  kind: "phase" | "fault";
  /** The phase's name, or the fault's "id · kind". */
  label: string;
  /** Wall-clock ms since the epoch. */
  start: number;
  /** Wall-clock ms; Infinity for a fault that has not ended while its run goes on. */
  end: number;
  /** A fault without a duration (a restart, a kill): a moment, not a stretch. */
  instant: boolean;
  /** The fault's servers; empty for a phase. */
  serverIds: readonly number[];
  runId: string;
  /** The run is still going on. */
  live: boolean;
  /** The phase's position in its run (for alternating shades); the fault's in its run. */
  index: number;
}

/**
 * A run's phases and faults as bands in wall-clock time (the report's offsets count from the
 * load's start). None before the load starts. A phase is its planned window; a run that was
 * aborted or could not run stops its phases where its load stopped. A fault is drawn from
 * when it was applied to when it ended; one that has not ended runs to `now` while the run
 * goes on (Infinity: to the chart's right edge), to its run's end otherwise. A fault never
 * applied (not yet, or its apply failed) has no band; one whose undo failed has its band.
 */
export function runBands(report: ScenarioReport, now = Infinity): Band[] {
  const base = Number(report.loadStartedAtMs);
  if (!(base > 0)) return [];
  const state = runState(report.state);
  const live = state === "running";
  const loadEnd = live ? Infinity : stoppedAt(report, base);
  const cut = state === "aborted" || state === "error" ? loadEnd : Infinity;
  const bands: Band[] = [];
  report.phases.forEach((p, index) => {
    const start = base + p.startMs;
    const end = Math.min(base + p.endMs, cut);
    if (end <= start && p.endMs > p.startMs) return;
    bands.push({ key: `${report.runId}/phase/${p.name}`, kind: "phase", label: p.name, start, end, instant: false, serverIds: [], runId: report.runId, live, index });
  });
  report.faults.forEach((f, index) => {
    // A failed apply leaves its moment and the error, and never ends; a failed undo ends.
    const failed = f.error !== "" && f.endedMs === 0;
    const applied = f.appliedMs > 0 || f.endedMs > 0 || f.atMs === 0;
    if (!applied || failed) return;
    const start = base + f.appliedMs;
    const instant = f.forMs === 0;
    let end: number;
    if (instant) end = start;
    else if (f.endedMs > 0) end = base + f.endedMs;
    else if (live) end = now;
    else end = Number.isFinite(loadEnd) ? loadEnd : base + f.appliedMs + f.forMs;
    bands.push({
      key: `${report.runId}/fault/${f.id}`,
      kind: "fault",
      label: `${f.id} · ${f.kind}`,
      start,
      end: Math.max(start, end),
      instant,
      serverIds: f.serverIds,
      runId: report.runId,
      live,
      index,
    });
  });
  return bands;
}

/** Where a finished run's load stopped: its elapsed time, or the run's end. */
function stoppedAt(report: ScenarioReport, base: number): number {
  const elapsed = report.load?.elapsedSeconds ?? 0;
  if (elapsed > 0) return base + elapsed * 1000;
  const ended = Number(report.endedAtMs);
  return ended > 0 ? ended : Infinity;
}

/**
 * The bands of every run for the farm's charts (`serverId` null: every phase and every
 * fault) or for one server's (every phase, and the faults that hit that server).
 */
export function farmBands(reports: readonly ScenarioReport[], serverId: number | null = null): Band[] {
  const out: Band[] = [];
  for (const r of reports) {
    for (const b of runBands(r)) {
      if (b.kind === "fault" && serverId !== null && !b.serverIds.includes(serverId)) continue;
      out.push(b);
    }
  }
  return out;
}

// ── geometry on a chart ──────────────────────────────────────────────────────

export interface BandBox {
  band: Band;
  /** Left and right edge as fractions (0 to 1) of the chart's width; equal for a moment. */
  x0: number;
  x1: number;
  /** Faults that overlap go on separate lanes (0 first) so that their labels do not collide. */
  lane: number;
  /** Cut by the chart's window: it began before it, or goes on after it. */
  cutStart: boolean;
  cutEnd: boolean;
}

/**
 * The bands within a chart's window [t0, t1] (same clock as the bands), clipped to it, with
 * a lane per fault: overlapping faults take the lowest free lane. A fault's label needs room
 * too: it holds its lane for at least `labelRoom` (a fraction of the width) from its start.
 * Bands wholly outside the window are left out; so is everything when the window is empty.
 */
export function bandBoxes(bands: readonly Band[], t0: number, t1: number, labelRoom: number | ((b: Band) => number) = 0): BandBox[] {
  if (!(t1 > t0)) return [];
  const span = t1 - t0;
  const frac = (t: number) => (Math.min(Math.max(t, t0), t1) - t0) / span;
  const shown = bands.filter((b) => b.end >= t0 && b.start <= t1);
  const boxes: BandBox[] = [];
  for (const b of shown.filter((b) => b.kind === "phase")) {
    boxes.push({ band: b, x0: frac(b.start), x1: frac(b.end), lane: 0, cutStart: b.start < t0, cutEnd: b.end > t1 });
  }
  const laneEnds: number[] = [];
  const faults = shown.filter((b) => b.kind === "fault").sort((a, b) => a.start - b.start || a.key.localeCompare(b.key));
  for (const b of faults) {
    let lane = laneEnds.findIndex((end) => end < b.start);
    if (lane < 0) lane = laneEnds.length;
    const room = typeof labelRoom === "number" ? labelRoom : labelRoom(b);
    laneEnds[lane] = Math.max(b.end, Math.max(b.start, t0) + room * span);
    boxes.push({ band: b, x0: frac(b.start), x1: frac(b.end), lane, cutStart: b.start < t0, cutEnd: b.end > t1 });
  }
  return boxes;
}

/** The bands over a moment, for a chart's read-out. */
export function bandsAt(bands: readonly Band[], t: number, slackMs = 0): Band[] {
  return bands.filter((b) => b.start - slackMs <= t && t <= b.end + slackMs);
}

/** "phases: warm, peak; faults: slow-2 · latency (server 2)" for a chart's accessible name. */
export function bandSummary(boxes: readonly BandBox[]): string {
  const phases = boxes.filter((b) => b.band.kind === "phase").map((b) => b.band.label);
  const faults = boxes
    .filter((b) => b.band.kind === "fault")
    .map((b) => {
      const ids = b.band.serverIds;
      const on = ids.length === 0 ? "" : ids.length === 1 ? ` (server ${ids[0]})` : ` (servers ${ids.join(", ")})`;
      return `${b.band.label}${on}`;
    });
  return [phases.length ? `phases: ${phases.join(", ")}` : "", faults.length ? `faults: ${faults.join(", ")}` : ""].filter(Boolean).join("; ");
}

// ── the timeline as chart series ─────────────────────────────────────────────

export interface TimelineSeries {
  /** Wall-clock ms of each second's middle. */
  times: number[];
  /** Requests that ended in each second: the throughput, in requests per second. */
  requests: number[];
  failures: number[];
  /** NaN for a second without an answered request. */
  p50: number[];
  p99: number[];
}

/**
 * The per-second timeline, dense from second 0 (the timeline leaves empty seconds out), on
 * the wall clock from the load's start. Provisional seconds (still filling, at the end of a
 * live run) are left out so that the last point does not look like a drop.
 */
export function timelineSeries(timeline: readonly LoadSecond[], loadStartedAtMs: number): TimelineSeries {
  const done = timeline.filter((s) => !s.provisional);
  const last = done.reduce((m, s) => Math.max(m, s.second), -1);
  const by = new Map(done.map((s) => [s.second, s]));
  const out: TimelineSeries = { times: [], requests: [], failures: [], p50: [], p99: [] };
  for (let k = 0; k <= last; k++) {
    const s = by.get(k);
    const requests = s ? Number(s.requests) : 0;
    const failures = s ? Number(s.failures) : 0;
    const answered = s !== undefined && requests > failures;
    out.times.push(loadStartedAtMs + k * 1000 + 500);
    out.requests.push(requests);
    out.failures.push(failures);
    out.p50.push(answered ? s.p50Ms : NaN);
    out.p99.push(answered ? s.p99Ms : NaN);
  }
  return out;
}

/**
 * The time axis of a run's charts: from the load's start to the end of its plan, of what it
 * has measured, or of now while it runs, whichever is latest. Null before the load starts.
 */
export function runRange(report: ScenarioReport, now: number): [number, number] | null {
  const base = Number(report.loadStartedAtMs);
  if (!(base > 0)) return null;
  const planned = report.phases.reduce((m, p) => Math.max(m, p.endMs), 0);
  const measured = (report.load?.timeline ?? []).reduce((m, s) => Math.max(m, (s.second + 1) * 1000), 0);
  const running = runState(report.state) === "running" ? Math.max(0, now - base) : 0;
  const faults = report.faults.reduce((m, f) => Math.max(m, f.endedMs), 0);
  const end = Math.max(planned, measured, running, faults, 1000);
  return [base, base + end];
}

// ── a scenario file's problems ───────────────────────────────────────────────

/** The offset in `text` where line `line` (from 1) starts; 0 for line 0 or beyond the text. */
export function lineOffset(text: string, line: number): number {
  if (line <= 1) return 0;
  let at = 0;
  for (let l = 1; l < line; l++) {
    const next = text.indexOf("\n", at);
    if (next < 0) return 0;
    at = next + 1;
  }
  return at;
}

// ── the list of runs, polled ─────────────────────────────────────────────────

export interface RunsSnapshot {
  /** Oldest first, as the controller lists them. */
  runs: readonly ScenarioReport[];
  /** The last poll's failure; null after a good one. */
  error: string | null;
  /** The controller does not run scenarios (an older farm): polled rarely then. */
  unsupported: boolean;
  /** At least one poll has answered (or failed). */
  loaded: boolean;
}

export interface PollerOptions {
  list: (signal: AbortSignal) => Promise<ScenarioReport[]>;
  /** Whether a failure means the controller has no scenarios at all. */
  isUnsupported?: (e: unknown) => boolean;
  describe?: (e: unknown) => string;
  everyMs?: number;
  unsupportedEveryMs?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

/**
 * Polls the list of scenario runs while anything subscribes (every `everyMs`), and stops
 * when the last subscriber leaves: the scenario view, the farm's charts and a server's
 * charts share one poll. `refresh` polls now (after a start or a stop).
 */
export class RunsPoller {
  private snapshot: RunsSnapshot = { runs: [], error: null, unsupported: false, loaded: false };
  private readonly listeners = new Set<() => void>();
  private timer: unknown = null;
  private inFlight: AbortController | null = null;
  private readonly o: Required<PollerOptions>;

  constructor(options: PollerOptions) {
    this.o = {
      isUnsupported: () => false,
      describe: (e) => (e instanceof Error ? e.message : String(e)),
      everyMs: 2000,
      unsupportedEveryMs: 60_000,
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
      ...options,
    };
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    if (this.listeners.size === 1) void this.poll();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.halt();
    };
  };

  getSnapshot = (): RunsSnapshot => this.snapshot;

  refresh(): void {
    if (this.listeners.size > 0) void this.poll();
  }

  private halt(): void {
    if (this.timer !== null) this.o.clearTimer(this.timer);
    this.timer = null;
    this.inFlight?.abort();
    this.inFlight = null;
  }

  private async poll(): Promise<void> {
    this.halt();
    const call = new AbortController();
    this.inFlight = call;
    let next: RunsSnapshot;
    try {
      const runs = await this.o.list(call.signal);
      next = { runs, error: null, unsupported: false, loaded: true };
    } catch (e) {
      if (call.signal.aborted) return;
      next = { ...this.snapshot, error: this.o.describe(e), unsupported: this.o.isUnsupported(e), loaded: true };
    }
    if (call.signal.aborted || this.inFlight !== call) return;
    this.inFlight = null;
    this.snapshot = next;
    for (const l of this.listeners) l();
    if (this.listeners.size > 0) this.timer = this.o.setTimer(() => void this.poll(), next.unsupported ? this.o.unsupportedEveryMs : this.o.everyMs);
  }
}
