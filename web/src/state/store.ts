// The one live store the components read: the farm state, the per-server series, the
// farm history and the connection, fed by the Watch loop. Components subscribe through
// useSyncExternalStore; notifications are batched to one per animation frame, so a burst
// of messages costs one render.
import { applyUpdate, emptyFarm, markUnsynced, updateSeries, type FarmState } from "./farm";
import { FarmHistory, pointFrom } from "./history";
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
      },
    });
    const save = () => this.history.save(this.o.storage);
    if (typeof window !== "undefined") window.addEventListener("pagehide", save);
    return () => {
      stop.abort();
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
