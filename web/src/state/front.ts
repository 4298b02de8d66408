// Load tests through a front (a load balancer in front of the farm): the form's weights and
// failover drill read into the spec's values, and a run's FrontResult shaped for the views
// (plain numbers, a dense per-second share chart with its drill marks, the figures as text).
// The generated messages are converted here, at the edge, so that the rest is plain data.
import { FailoverAction, type FailoverResult, type FrontResult } from "../gen/farm/v1/farm_pb";

/** The bounds the controller holds a front run to (proto/src/limits.rs). */
export const MAX_BACKEND_WEIGHT = 256;
export const MAX_BACKEND_WEIGHTS = 1000;
export const MAX_FAILOVER_DOWN_MS = 3_600_000;

// ── weights ──────────────────────────────────────────────────────────────────

export interface Weight {
  serverId: number;
  weight: number;
}

/**
 * "3=2, 4=1" → [{3, 2}, {4, 1}]: the share each server should get, relative to the others
 * named. Empty means equal shares over the whole farm. `farm` (the ids the dashboard knows),
 * when not empty, catches a server that is not part of the farm before the controller does.
 */
export function parseWeights(text: string, farm: ReadonlySet<number> = new Set()): { weights: Weight[]; error: string | null } {
  const weights: Weight[] = [];
  const seen = new Set<number>();
  // "3 = 2" is one entry: the spaces around "=" go before splitting on spaces.
  const parts = text.replace(/\s*=\s*/g, "=").split(/[\s,;]+/).filter(Boolean);
  if (parts.length > MAX_BACKEND_WEIGHTS) return { weights: [], error: `at most ${MAX_BACKEND_WEIGHTS} servers` };
  for (const part of parts) {
    const m = /^(?:server-)?(\d+)=(\d+)$/i.exec(part);
    if (!m) return { weights: [], error: `"${part}" is not ID=WEIGHT, like 3=2` };
    const serverId = Number(m[1]);
    const weight = Number(m[2]);
    if (serverId < 1) return { weights: [], error: `"${part}": server ids start at 1` };
    if (weight < 1 || weight > MAX_BACKEND_WEIGHT) return { weights: [], error: `"${part}": a weight is 1 to ${MAX_BACKEND_WEIGHT}` };
    if (seen.has(serverId)) return { weights: [], error: `server ${serverId} is named twice` };
    if (farm.size > 0 && !farm.has(serverId)) return { weights: [], error: `server ${serverId} is not part of this farm` };
    seen.add(serverId);
    weights.push({ serverId, weight });
  }
  return { weights, error: null };
}

// ── failover drill ───────────────────────────────────────────────────────────

export const DRILL_ACTIONS = ["kill", "stop", "pause", "health"] as const;
export type DrillAction = (typeof DRILL_ACTIONS)[number];

const ACTION_ENUM: Record<DrillAction, FailoverAction> = {
  kill: FailoverAction.KILL,
  stop: FailoverAction.STOP,
  pause: FailoverAction.PAUSE,
  health: FailoverAction.HEALTH,
};

export function actionName(action: FailoverAction): DrillAction | null {
  return DRILL_ACTIONS.find((a) => ACTION_ENUM[a] === action) ?? null;
}

/** The drill's fields, as typed (an empty field is not a zero). */
export interface DrillForm {
  action: DrillAction;
  serverId: string;
  atSeconds: string;
  forSeconds: string;
}

export interface Drill {
  serverId: number;
  action: FailoverAction;
  atMs: number;
  downMs: number;
}

export type DrillErrors = Partial<Record<"serverId" | "atSeconds" | "forSeconds" | "run", string>>;

/**
 * The drill the form describes, or what is wrong with each field. `runSeconds` is the run's
 * duration, or null when the run stops after a number of requests: a drill needs a run that
 * lasts its duration, and the server must be back before it ends so that its return is
 * measured (the controller holds to both; saying so here names the field at fault).
 */
export function readDrill(form: DrillForm, runSeconds: number | null, farm: ReadonlySet<number> = new Set()): { drill: Drill } | { errors: DrillErrors } {
  const errors: DrillErrors = {};
  const id = form.serverId.trim();
  const serverId = Number(id);
  if (id === "") errors.serverId = "Which server to take down";
  else if (!/^\d+$/.test(id) || serverId < 1) errors.serverId = `"${id}" is not a server id`;
  else if (farm.size > 0 && !farm.has(serverId)) errors.serverId = `server ${serverId} is not part of this farm`;

  const at = seconds(form.atSeconds);
  if (at === null) errors.atSeconds = "When to take it down, in seconds from the start (0 or more)";
  const down = seconds(form.forSeconds);
  if (down === null || down <= 0) errors.forSeconds = "How long it stays down, in seconds (more than 0)";
  else if (Math.round(down * 1000) > MAX_FAILOVER_DOWN_MS) errors.forSeconds = `at most ${MAX_FAILOVER_DOWN_MS / 1000} s`;

  if (runSeconds === null) errors.run = "A drill needs a run that lasts its duration: stop after a duration, not a number of requests";
  else if (at !== null && down !== null && down > 0 && at + down >= runSeconds) {
    errors.run = `The server must be back before the run ends: ${trim(at)} s + ${trim(down)} s is not under the run's ${runSeconds} s`;
  }
  if (Object.keys(errors).length > 0) return { errors };
  return { drill: { serverId, action: ACTION_ENUM[form.action], atMs: Math.round(at! * 1000), downMs: Math.max(1, Math.round(down! * 1000)) } };
}

/** A number of seconds, 0 or more (decimals allowed); null when it is not one. */
function seconds(text: string): number | null {
  const t = text.trim();
  if (t === "") return null;
  const n = Number(t);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

function trim(n: number): string {
  return String(Number(n.toFixed(3)));
}

// ── the result, as plain data ────────────────────────────────────────────────

export interface BackendView {
  serverId: number;
  requests: number;
  failures: number;
  /** 0 to 1. */
  share: number;
  /** 0 to 1; 0 for a server no weight named. */
  expectedShare: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ShareSecondView {
  second: number;
  requests: number;
  failures: number;
  unattributed: number;
  backends: ReadonlyMap<number, number>;
}

export interface FailoverView {
  serverId: number;
  action: DrillAction | null;
  atMs: number;
  downMs: number;
  actionAtMs: number | null;
  backAtMs: number | null;
  error: string;
  firstErrorMs: number | null;
  failedRequests: number;
  failoverMs: number | null;
  detectionMs: number | null;
  readmissionMs: number | null;
}

export interface FrontView {
  url: string;
  backends: BackendView[];
  /** Answers with a server's name: the ones the shares count. */
  attributed: number;
  unattributed: number;
  maxMinRatio: number;
  maxDeviation: number;
  timeline: ShareSecondView[];
  timelineTruncated: boolean;
  failover: FailoverView | null;
}

export function toFrontView(f: FrontResult): FrontView {
  const backends = f.backends.map((b) => ({
    serverId: b.serverId,
    requests: Number(b.requests),
    failures: Number(b.failures),
    share: b.share,
    expectedShare: b.expectedShare,
    p50Ms: b.latency?.p50Ms ?? NaN,
    p99Ms: b.latency?.p99Ms ?? NaN,
  }));
  return {
    url: f.url,
    backends,
    attributed: backends.reduce((sum, b) => sum + b.requests, 0),
    unattributed: Number(f.unattributed),
    maxMinRatio: f.maxMinRatio,
    maxDeviation: f.maxDeviation,
    timeline: f.timeline.map((s) => ({
      second: s.second,
      requests: Number(s.requests),
      failures: Number(s.failures),
      unattributed: Number(s.unattributed),
      backends: new Map(s.backends.map((b) => [b.serverId, Number(b.requests)])),
    })),
    timelineTruncated: f.timelineTruncated,
    failover: f.failover ? toFailoverView(f.failover) : null,
  };
}

function toFailoverView(f: FailoverResult): FailoverView {
  const opt = (v: number | undefined) => (v === undefined ? null : v);
  return {
    serverId: f.drill?.serverId ?? 0,
    action: f.drill ? actionName(f.drill.action) : null,
    atMs: f.drill?.atMs ?? 0,
    downMs: f.drill?.downMs ?? 0,
    actionAtMs: opt(f.actionAtMs),
    backAtMs: opt(f.backAtMs),
    error: f.error,
    firstErrorMs: opt(f.firstErrorMs),
    failedRequests: Number(f.failedRequests),
    failoverMs: opt(f.failoverMs),
    detectionMs: opt(f.detectionMs),
    readmissionMs: opt(f.readmissionMs),
  };
}

// ── figures as text ──────────────────────────────────────────────────────────

/** A time in ms for a person: "340 ms", "2.35 s"; "not seen" when the run did not see it. */
export function millis(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return "not seen";
  if (v < 1000) return `${Math.round(v)} ms`;
  return `${(v / 1000).toFixed(2)} s`;
}

/** A share (0 to 1) in percent: "100%", "33.3%", "0%". */
export function sharePct(share: number): string {
  if (!Number.isFinite(share)) return "–";
  const p = share * 100;
  if (p === 0 || p === 100) return `${p}%`;
  return `${p.toFixed(1)}%`;
}

export interface Figure {
  key: string;
  label: string;
  value: string;
  /** What the figure means, for a tooltip. */
  hint: string;
}

/** The fairness of the spread; "–" before any server has answered. */
export function fairnessFigures(v: FrontView): Figure[] {
  const none = v.attributed === 0;
  return [
    {
      key: "ratio",
      label: "Max/min ratio",
      value: none ? "–" : v.maxMinRatio === 0 ? "0 · a server got nothing" : v.maxMinRatio.toFixed(3),
      hint: "The largest over the smallest share / expected share: 1 is perfectly fair, 0 means a server got nothing",
    },
    {
      key: "deviation",
      label: "Largest deviation",
      value: none ? "–" : `${(v.maxDeviation * 100).toFixed(1)}%`,
      hint: "The largest |share − expected| / expected among the expected servers",
    },
    {
      key: "unattributed",
      label: "Unattributed",
      value: v.unattributed.toLocaleString("en-US"),
      hint: "Requests no server of the farm answered: the front's own answers (e.g. its 503) and requests that got no answer",
    },
  ];
}

/**
 * The drill's figures; "not seen" for a time the run did not see. Before the server is back
 * the times since the action are still growing, so `done` says whether a missing one is
 * final ("not seen") or still to come ("not yet").
 */
export function drillFigures(f: FailoverView, done: boolean): Figure[] {
  const time = (v: number | null) => (v === null && !done ? "not yet" : millis(v));
  return [
    { key: "down", label: "Taken down at", value: time(f.actionAtMs), hint: "When the server was taken down, since the run's start" },
    { key: "back", label: "Back at", value: time(f.backAtMs), hint: "When the farm brought it back, since the run's start" },
    { key: "first-error", label: "First error", value: time(f.firstErrorMs), hint: "The first failure after the action, counted from it" },
    { key: "failed", label: "Failed requests", value: f.failedRequests.toLocaleString("en-US"), hint: "Failures from the action until the server was back" },
    { key: "failover", label: "Failover time", value: time(f.failoverMs), hint: "The last failure before the server was back, counted from the action: when errors stopped" },
    { key: "detection", label: "Detection time", value: time(f.detectionMs), hint: "The server's last answer before it was back, counted from the action: when the front stopped sending to it" },
    { key: "readmission", label: "Re-admission time", value: time(f.readmissionMs), hint: "The server's first answer after it was back, counted from its return" },
  ];
}

// ── the per-second share chart ───────────────────────────────────────────────

export type ChartMode = "share" | "requests";

export interface ChartSeries {
  /** "server-3", "others", "unattributed". */
  key: string;
  label: string;
  /** The server; null for "others" and "unattributed". */
  serverId: number | null;
  /** One value per second: percent of that second's requests, or requests. */
  values: number[];
}

export interface ShareChart {
  /** Seconds since the run's start, dense from 0 (the timeline leaves empty ones out). */
  seconds: number[];
  /** In stacking order, bottom first: servers by id, then the others, then the unattributed. */
  series: ChartSeries[];
  /** The top of the scale: 100 for shares, the busiest second's requests otherwise. */
  max: number;
  /** Servers folded into "others". */
  othersCount: number;
}

/**
 * The timeline as stacked series. With more than `top` servers, the `top` busiest (and the
 * `pinned` ones, e.g. the drill's server) keep their own series, the rest are summed into
 * "others", so that a thousand servers still draw a readable chart.
 */
export function shareChart(timeline: readonly ShareSecondView[], { mode = "share", top = 10, pinned = [] }: { mode?: ChartMode; top?: number; pinned?: readonly number[] } = {}): ShareChart {
  const last = timeline.reduce((m, s) => Math.max(m, s.second), -1);
  const seconds = Array.from({ length: last + 1 }, (_, i) => i);
  const bySecond = new Map(timeline.map((s) => [s.second, s]));

  const totals = new Map<number, number>();
  for (const s of timeline) for (const [id, n] of s.backends) totals.set(id, (totals.get(id) ?? 0) + n);
  const ranked = [...totals.keys()].sort((a, b) => totals.get(b)! - totals.get(a)! || a - b);
  // Folding a single server into "others" would hide its name for nothing.
  let ownIds = ranked;
  if (ranked.length > top + 1) {
    const kept = new Set(pinned.filter((id) => totals.has(id)));
    for (const id of ranked) {
      if (kept.size >= top) break;
      kept.add(id);
    }
    ownIds = [...kept];
  }
  ownIds = [...ownIds].sort((a, b) => a - b);
  const own = new Set(ownIds);
  const othersCount = ranked.length - ownIds.length;

  const value = (n: number, s: ShareSecondView | undefined) => (mode === "share" ? (s && s.requests > 0 ? (n / s.requests) * 100 : 0) : n);
  const series: ChartSeries[] = ownIds.map((id) => ({
    key: `server-${id}`,
    label: `server-${id}`,
    serverId: id,
    values: seconds.map((sec) => {
      const s = bySecond.get(sec);
      return value(s?.backends.get(id) ?? 0, s);
    }),
  }));
  if (othersCount > 0) {
    series.push({
      key: "others",
      label: `${othersCount} others`,
      serverId: null,
      values: seconds.map((sec) => {
        const s = bySecond.get(sec);
        let n = 0;
        if (s) for (const [id, c] of s.backends) if (!own.has(id)) n += c;
        return value(n, s);
      }),
    });
  }
  if (timeline.some((s) => s.unattributed > 0)) {
    series.push({
      key: "unattributed",
      label: "unattributed",
      serverId: null,
      values: seconds.map((sec) => {
        const s = bySecond.get(sec);
        return value(s?.unattributed ?? 0, s);
      }),
    });
  }
  const max = mode === "share" ? 100 : Math.max(1, ...seconds.map((sec) => bySecond.get(sec)?.requests ?? 0));
  return { seconds, series, max, othersCount };
}

/** Each series' band when stacked: its bottom and top at every second. */
export function stack(series: readonly ChartSeries[]): { lower: number[]; upper: number[] }[] {
  const n = series[0]?.values.length ?? 0;
  let base = new Array<number>(n).fill(0);
  return series.map((s) => {
    const upper = base.map((b, i) => b + s.values[i]);
    const band = { lower: base, upper };
    base = upper;
    return band;
  });
}

export interface DrillMarks {
  /** When the server was taken down, in seconds since the start; null before it was. */
  down: number | null;
  /** When it was back; null before it was. */
  back: number | null;
  /** The band it was down over: from `down` to `back`, or to `end` while it is still down. */
  band: [number, number] | null;
}

/** The drill's moments on the chart's time axis, which ends at `end` seconds. */
export function drillMarks(f: FailoverView | null, end: number): DrillMarks {
  const down = f?.actionAtMs == null ? null : f.actionAtMs / 1000;
  const back = f?.backAtMs == null ? null : f.backAtMs / 1000;
  const band: [number, number] | null = down === null ? null : [down, Math.max(down, back ?? end)];
  return { down, back, band };
}
