// The farm's history for the overview charts: one point a second over the last minutes,
// kept in localStorage so that a page reload does not lose it. Bounded by count and age.
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
