import { describe, expect, it, vi } from "vitest";
import { FarmStore } from "./store";
import { HISTORY_KEY } from "./history";
import { MemoryStorage, server, totals, update } from "./testdata";

describe("FarmStore", () => {
  it("applies updates, batches notifications and persists the history", () => {
    let now = 10_000;
    const queued: (() => void)[] = [];
    const storage = new MemoryStorage() as unknown as Storage;
    const store = new FarmStore({
      open: () => (async function* () {})(),
      storage,
      schedule: (fn) => queued.push(fn),
      now: () => now,
    });
    let notified = 0;
    store.subscribe(() => notified++);
    store.apply(update({ full: true, servers: [server(1), server(2)], totals: totals({ rps: 3 }), version: 1 }));
    now += 1000;
    store.apply(update({ servers: [server(2, { sampleMs: 2000, cpu: 9 })], totals: totals({ rps: 4 }), version: 2 }));
    expect(queued).toHaveLength(1); // one notification for the burst
    queued.shift()!();
    expect(notified).toBe(1);
    const snap = store.getSnapshot();
    expect(snap.farm.ordered.map((s) => s.cpu)).toEqual([1, 9]);
    expect(store.series.get(2)?.cpu.toArray()).toEqual([1, 9]);
    expect(store.history.points.map((p) => p.rps)).toEqual([3, 4]);
    expect(storage.getItem(HISTORY_KEY)).toContain('"rps":[3]'); // saved at most every 5 s

    const reloaded = new FarmStore({ open: () => (async function* () {})(), storage, schedule: () => {}, now: () => now });
    expect(reloaded.history.points.map((p) => p.rps)).toEqual([3]);
  });

  it("fills the farm history from the controller's each time the stream goes live", async () => {
    const now = 1_000_000;
    const asked: number[] = [];
    let open = 0;
    let release: () => void = () => {};
    const store = new FarmStore({
      // The first stream sends a snapshot and ends (a reconnect); the second stays open.
      open: (signal) =>
        (async function* () {
          open++;
          yield update({ full: true, servers: [server(1), server(2)], totals: totals({ total: 2, rps: 5 }), version: open });
          if (open > 1) await new Promise<void>((r) => signal.addEventListener("abort", () => r()));
        })(),
      schedule: (fn) => fn(),
      now: () => now,
      metricHistory: async (fromMs) => {
        asked.push(fromMs);
        await new Promise<void>((r) => (release = r));
        return { resolutionMs: 1000, points: [{ atMs: now - 10_000, cpu: 50, memory: 1, rps: 3, eps: 0, healthy: 1 }] };
      },
    });
    const stop = store.start();
    await vi.waitFor(() => expect(asked).toHaveLength(1));
    await vi.waitFor(() => expect(open).toBe(2), { timeout: 2000 });
    await vi.waitFor(() => expect(asked).toHaveLength(2)); // once more on the reconnect; the first is dropped
    release();
    await vi.waitFor(() => expect(store.history.points).toHaveLength(2));
    expect(store.getSnapshot().historyRevision).toBe(store.history.revision);
    expect(asked.every((t) => t === now - store.history.windowMs)).toBe(true);
    const points = store.history.points.map((p) => [p.t, p.rps, p.cpu, p.down]);
    expect(points).toEqual([
      [now - 9500, 3, 25, 1],
      [now, 5, 0, 0],
    ]);
    stop();
  });
});
