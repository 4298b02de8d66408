import { describe, expect, it } from "vitest";
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
});
