// Builders for the tests.
import type { FarmTotals, ServerView, Status, WatchUpdate } from "./model";

export function server(id: number, over: Partial<ServerView> = {}): ServerView {
  return {
    id,
    name: `server-${id}`,
    status: "healthy" as Status,
    reason: "ok",
    address: `127.0.0.1:${8000 + id}`,
    placement: "",
    runtime: "process",
    agentVersion: "0.1.0",
    connected: true,
    lastSeenMs: 1000,
    sampleMs: 1000,
    nodeState: "running",
    cpu: 1,
    cpuLimitCores: 0,
    memory: 10 << 20,
    memoryResident: 0,
    memoryLimit: 0,
    rps: 0,
    eps: 0,
    p50: 1,
    p99: 2,
    inFlight: 0,
    uptime: 1,
    restarts: 0,
    simulating: false,
    requestsTotal: 0,
    faults: [],
    ...over,
  };
}

export function totals(over: Partial<FarmTotals> = {}): FarmTotals {
  return {
    timestampMs: 0, total: 0, healthy: 0, degraded: 0, stopped: 0, starting: 0, unreachable: 0,
    cpuTotal: 0, cpuMean: 0, memoryTotal: 0, requestsTotal: 0, errorsTotal: 0, rps: 0, eps: 0,
    p99Max: 0, p50Mean: 0, inFlight: 0, ...over,
  };
}

export function update(over: Partial<WatchUpdate>): WatchUpdate {
  return { full: false, servers: [], removed: [], totals: null, version: 1, ...over };
}

/** The part of `Storage` the history uses, kept in memory. */
export class MemoryStorage {
  items = new Map<string, string>();
  getItem(k: string) {
    return this.items.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.items.set(k, v);
  }
}
