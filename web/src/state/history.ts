// The farm's history for the overview charts: one point a second over the last minutes,
// kept in localStorage so that a page reload does not lose it. Bounded by count and age.
// When the dashboard opens or reconnects, the controller's own history (which outlives
// restarts of the controller and of the page) fills in the seconds it has that the page
// has not: points the page saw itself win.
import type { FarmTotals } from "./model";

export interface FarmPoint {
  t: number;
  rps: number;
  eps: number;
  cpu: number;
  memory: number;
  healthy: number;
  degraded: number;
  down: number;
  p99: number;
}

const FIELDS = ["t", "rps", "eps", "cpu", "memory", "healthy", "degraded", "down", "p99"] as const;
export const HISTORY_KEY = "farm.history.v1";
/** 15 minutes at one point a second. */
export const HISTORY_WINDOW_MS = 15 * 60 * 1000;
export const HISTORY_MAX_POINTS = 900;

export function pointFrom(totals: FarmTotals, t: number): FarmPoint {
  return {
    t,
    rps: totals.rps,
    eps: totals.eps,
    cpu: totals.cpuMean,
    memory: totals.memoryTotal,
    healthy: totals.healthy,
    degraded: totals.degraded,
    down: totals.stopped + totals.unreachable + totals.starting,
    p99: totals.p99Max,
  };
}

/** The controller's metric history over a span (GetMetricHistory), as plain numbers. */
export interface MetricHistory {
  /** Milliseconds each point covers: 1,000 within the last hour, 60,000 beyond. */
  resolutionMs: number;
  points: readonly MetricHistoryPoint[];
}

export interface MetricHistoryPoint {
  /** The start of the second or minute it covers. */
  atMs: number;
  /** Percent of one core; the farm's is the sum over its servers. */
  cpu: number;
  memory: number;
  rps: number;
  eps: number;
  /** The farm: healthy servers; a server: 1 when healthy (a fraction over a minute). */
  healthy: number;
}

/** A history point's time on a chart: the middle of what it covers. */
export function historyTime(p: MetricHistoryPoint, resolutionMs: number): number {
  return p.atMs + resolutionMs / 2;
}

/**
 * The farm's history as overview points. The history keeps the farm's CPU summed and its
 * healthy servers, not its size then: the mean CPU and the servers not healthy are taken
 * against `servers`, the farm's size now. It keeps no latency (the overview charts none).
 */
export function farmPointsFrom(history: MetricHistory, servers: number): FarmPoint[] {
  const n = Math.max(1, servers);
  return history.points.map((p) => ({
    t: historyTime(p, history.resolutionMs),
    rps: p.rps,
    eps: p.eps,
    cpu: p.cpu / n,
    memory: p.memory,
    healthy: p.healthy,
    degraded: 0,
    down: Math.max(0, servers - p.healthy),
    p99: 0,
  }));
}

/**
 * Two series of points in time order as one: every point of `newer` (what the page saw
 * itself, or fresher), and of `older` (the history) those that fall after the last of
 * `newer` or where `newer` has nothing within `slackMs`: its gaps.
 */
export function mergePoints<P extends { t: number }>(older: readonly P[], newer: readonly P[], slackMs: number): P[] {
  if (newer.length === 0) return older.slice();
  const last = newer[newer.length - 1].t;
  const out: P[] = [];
  let j = 0;
  let k = 0;
  for (const p of older) {
    // newer[j] is the first point of newer at or after p.
    while (j < newer.length && newer[j].t < p.t) j++;
    const gap = Math.min(j < newer.length ? newer[j].t - p.t : Infinity, j > 0 ? p.t - newer[j - 1].t : Infinity);
    if (!(p.t > last || gap >= slackMs)) continue;
    while (k < newer.length && newer[k].t <= p.t) out.push(newer[k++]);
    out.push(p);
  }
  while (k < newer.length) out.push(newer[k++]);
  return out;
}

export class FarmHistory {
  private pts: FarmPoint[] = [];
  /** Bumped on every change. */
  revision = 0;

  constructor(
    readonly maxPoints = HISTORY_MAX_POINTS,
    readonly windowMs = HISTORY_WINDOW_MS,
  ) {}

  get points(): readonly FarmPoint[] {
    return this.pts;
  }

  /**
   * Adds a point; a point in the same second as the last one replaces it, one older than
   * the last is ignored (a clock step), and points beyond the bounds fall off.
   */
  add(point: FarmPoint): void {
    const last = this.pts[this.pts.length - 1];
    if (last && Math.floor(point.t / 1000) === Math.floor(last.t / 1000)) {
      this.pts[this.pts.length - 1] = point;
    } else if (last && point.t < last.t) {
      return;
    } else {
      this.pts.push(point);
    }
    this.trim(point.t);
    this.revision++;
  }

  /**
   * Fills in points from the controller's history: those after `now` (a clock ahead of
   * this one) are left out, and those where the page has its own points within `slackMs`
   * (the page's win).
   */
  fill(points: readonly FarmPoint[], now: number, slackMs = 1000): void {
    const kept = points.filter((p) => p.t <= now);
    if (kept.length === 0) return;
    this.pts = mergePoints(kept, this.pts, slackMs);
    this.trim(now);
    this.revision++;
  }

  private trim(now: number): void {
    const oldest = now - this.windowMs;
    let drop = 0;
    while (drop < this.pts.length && this.pts[drop].t < oldest) drop++;
    drop = Math.max(drop, this.pts.length - this.maxPoints);
    if (drop > 0) this.pts.splice(0, drop);
  }

  /** Serialised column-wise (compact), for storage. */
  serialize(): string {
    const columns: Record<string, number[]> = {};
    for (const f of FIELDS) columns[f] = this.pts.map((p) => Math.round(p[f] * 1000) / 1000);
    return JSON.stringify({ v: 1, ...columns });
  }

  /** Restores points saved by `serialize`, keeping only well-formed ones inside the window. */
  restore(raw: string | null, now: number): void {
    if (!raw) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return;
    }
    if (typeof parsed !== "object" || parsed === null || (parsed as { v?: unknown }).v !== 1) return;
    const columns = parsed as Record<string, unknown>;
    const t = columns.t;
    if (!Array.isArray(t)) return;
    const points: FarmPoint[] = [];
    for (let i = 0; i < t.length; i++) {
      const p = {} as FarmPoint;
      let ok = true;
      for (const f of FIELDS) {
        const col = columns[f];
        const v = Array.isArray(col) ? col[i] : undefined;
        if (typeof v !== "number" || !Number.isFinite(v)) {
          ok = false;
          break;
        }
        p[f] = v;
      }
      if (ok && p.t <= now && p.t >= now - this.windowMs) points.push(p);
    }
    points.sort((a, b) => a.t - b.t);
    this.pts = points.slice(-this.maxPoints);
    this.revision++;
  }

  load(storage: Pick<Storage, "getItem"> | undefined, now: number): void {
    try {
      this.restore(storage?.getItem(HISTORY_KEY) ?? null, now);
    } catch {
      // Storage can be disabled; the history then starts empty.
    }
  }

  save(storage: Pick<Storage, "setItem"> | undefined): void {
    try {
      storage?.setItem(HISTORY_KEY, this.serialize());
    } catch {
      // Full or disabled storage: the history lives on in memory.
    }
  }
}
