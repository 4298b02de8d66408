// Applying Watch messages: a full snapshot replaces what the dashboard knew, a delta
// changes, adds and removes servers. Pure functions on plain data; the per-server
// sparkline series are updated beside the state.
import type { FarmTotals, ServerView, WatchUpdate } from "./model";
import { ServerSeries } from "./ring";

export interface FarmState {
  /** Every server by id. A new Map whenever a server changes. */
  servers: ReadonlyMap<number, ServerView>;
  /** The same servers ordered by id. */
  ordered: readonly ServerView[];
  totals: FarmTotals | null;
  /** Version of the farm's state the last message brought us to. */
  version: number;
  /** Whether a full snapshot has arrived since the stream (re)opened. */
  synced: boolean;
  /** When the last message arrived (ms since the epoch), 0 before any. */
  updatedAt: number;
}

export function emptyFarm(): FarmState {
  return { servers: new Map(), ordered: [], totals: null, version: 0, synced: false, updatedAt: 0 };
}

/** The state after `update`. Deltas older than what we have are ignored. */
export function applyUpdate(state: FarmState, update: WatchUpdate, now = Date.now()): FarmState {
  if (!update.full && state.synced && update.version < state.version) return state;
  let servers: Map<number, ServerView>;
  let membershipChanged = false;
  if (update.full) {
    servers = new Map(update.servers.map((s) => [s.id, s]));
    membershipChanged = true;
  } else if (update.servers.length === 0 && update.removed.length === 0) {
    return { ...state, totals: update.totals ?? state.totals, version: update.version, updatedAt: now };
  } else {
    servers = new Map(state.servers);
    for (const s of update.servers) {
      if (!servers.has(s.id)) membershipChanged = true;
      servers.set(s.id, s);
    }
    for (const id of update.removed) {
      if (servers.delete(id)) membershipChanged = true;
    }
  }
  const ordered = membershipChanged
    ? [...servers.values()].sort((a, b) => a.id - b.id)
    : state.ordered.map((s) => servers.get(s.id) ?? s);
  return {
    servers,
    ordered,
    totals: update.totals ?? state.totals,
    version: update.version,
    synced: state.synced || update.full,
    updatedAt: now,
  };
}

/** Marks the state as needing a new snapshot (the stream broke); the servers stay shown. */
export function markUnsynced(state: FarmState): FarmState {
  return state.synced ? { ...state, synced: false } : state;
}

/**
 * Appends the new samples of `update` to the per-server series, creates series for new
 * servers and drops those of servers that left (removed, or absent from a full snapshot).
 */
export function updateSeries(series: Map<number, ServerSeries>, update: WatchUpdate): void {
  if (update.full) {
    const present = new Set(update.servers.map((s) => s.id));
    for (const id of [...series.keys()]) if (!present.has(id)) series.delete(id);
  }
  for (const id of update.removed) series.delete(id);
  for (const s of update.servers) {
    let one = series.get(s.id);
    if (!one) {
      one = new ServerSeries();
      series.set(s.id, one);
    }
    one.push(s.sampleMs, s.cpu, s.memory, s.rps);
  }
}
