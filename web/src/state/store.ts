// The one live store the components read: the farm state, the per-server series, the
// farm history and the connection, fed by the Watch loop. Components subscribe through
// useSyncExternalStore; notifications are batched to one per animation frame, so a burst
// of messages costs one render. Each time the stream goes live (the page opens, or comes
// back after the gateway or the controller went away), the farm history is filled in once
// from the controller's (GetMetricHistory), over the window the charts show.
import { applyUpdate, emptyFarm, markUnsynced, updateSeries, type FarmState } from "./farm";
import { FarmHistory, farmPointsFrom, pointFrom, type MetricHistory } from "./history";
import type { WatchUpdate } from "./model";
import type { ServerSeries } from "./ring";
import { watchLoop, type Connection, type OpenWatch } from "./watch";
import { Backoff } from "./backoff";

export interface Snapshot {
  farm: FarmState;
  connection: Connection;
  /** Bumped when the farm history changes. */
  historyRevision: number;
}

export interface StoreOptions {
  open: OpenWatch;
  storage?: Storage;
  /** Schedules a notification; requestAnimationFrame in browsers. */
  schedule?: (fn: () => void) => void;
  now?: () => number;
  /**
   * The farm's metrics from `fromMs` to now from the controller's history; null where it
   * keeps none (an older controller). Absent: the page's own history only.
   */
  metricHistory?: (fromMs: number, signal: AbortSignal) => Promise<MetricHistory | null>;
}

const SAVE_EVERY_MS = 5000;

export class FarmStore {
  readonly series = new Map<number, ServerSeries>();
  readonly history = new FarmHistory();
  private snapshot: Snapshot;
  private readonly listeners = new Set<() => void>();
  private pending = false;
  private lastSave = 0;
  private readonly schedule: (fn: () => void) => void;
  private readonly now: () => number;
  private filling: AbortController | null = null;

  constructor(private readonly o: StoreOptions) {
    this.now = o.now ?? Date.now;
    this.schedule =
      o.schedule ?? (typeof requestAnimationFrame === "function" ? (fn) => requestAnimationFrame(fn) : (fn) => setTimeout(fn, 16));
    this.history.load(o.storage, this.now());
    this.snapshot = {
      farm: emptyFarm(),
      connection: { state: "connecting", attempt: 0, retryAt: null, error: null, since: this.now() },
      historyRevision: this.history.revision,
    };
  }

  /** Starts watching; the returned function stops. */
  start(): () => void {
    const stop = new AbortController();
    void watchLoop({
      open: this.o.open,
      signal: stop.signal,
      backoff: new Backoff({ baseMs: 250, maxMs: 5000 }),
      onUpdate: (u) => this.apply(u),
      onConnection: (connection) => {
        const farm = connection.state === "live" ? this.snapshot.farm : markUnsynced(this.snapshot.farm);
        this.snapshot = { ...this.snapshot, farm, connection };
        this.notifySoon();
        if (connection.state === "live") void this.fillHistory();
      },
    });
    const save = () => this.history.save(this.o.storage);
    if (typeof window !== "undefined") window.addEventListener("pagehide", save);
    return () => {
      stop.abort();
      this.filling?.abort();
      save();
      if (typeof window !== "undefined") window.removeEventListener("pagehide", save);
    };
  }

  /** Applies one Watch message (also used by tests and the benchmark). */
  apply(update: WatchUpdate): void {
    const now = this.now();
    const farm = applyUpdate(this.snapshot.farm, update, now);
    if (farm === this.snapshot.farm) return;
    updateSeries(this.series, update);
    if (update.totals) this.history.add(pointFrom(update.totals, now));
    if (now - this.lastSave >= SAVE_EVERY_MS) {
      this.lastSave = now;
      this.history.save(this.o.storage);
    }
    this.snapshot = { ...this.snapshot, farm, historyRevision: this.history.revision };
    this.notifySoon();
  }

  /**
   * One GetMetricHistory over the history's window, merged in when it answers (by then the
   * stream's first snapshot has told the farm's size). A failure leaves the page's own.
   */
  async fillHistory(): Promise<void> {
    const fetch = this.o.metricHistory;
    if (!fetch) return;
    this.filling?.abort();
    const call = new AbortController();
    this.filling = call;
    let answer: MetricHistory | null;
    try {
      answer = await fetch(this.now() - this.history.windowMs, call.signal);
    } catch {
      answer = null;
    }
    if (call.signal.aborted || !answer) return;
    this.filling = null;
    const farm = this.snapshot.farm;
    const servers = farm.totals?.total ?? farm.ordered.length;
    const before = this.history.revision;
    this.history.fill(farmPointsFrom(answer, servers), this.now(), Math.max(1000, answer.resolutionMs));
    if (this.history.revision === before) return;
    this.history.save(this.o.storage);
    this.snapshot = { ...this.snapshot, historyRevision: this.history.revision };
    this.notifySoon();
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): Snapshot => this.snapshot;

  private notifySoon(): void {
    if (this.pending) return;
    this.pending = true;
    this.schedule(() => {
      this.pending = false;
      for (const l of this.listeners) l();
    });
  }
}
