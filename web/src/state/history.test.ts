import { describe, expect, it } from "vitest";
import { FarmHistory, HISTORY_KEY, pointFrom, type FarmPoint } from "./history";
import { MemoryStorage, totals } from "./testdata";

const p = (t: number, rps = 1): FarmPoint => ({ t, rps, eps: 0, cpu: 1, memory: 2, healthy: 3, degraded: 0, down: 0, p99: 1 });

describe("FarmHistory", () => {
  it("keeps one point a second, bounded by count and age", () => {
    const h = new FarmHistory(5, 60_000);
    h.add(p(1000, 1));
    h.add(p(1500, 2)); // same second: replaces
    expect(h.points.map((x) => x.rps)).toEqual([2]);
    h.add(p(500)); // older: ignored
    expect(h.points).toHaveLength(1);
    for (let s = 2; s <= 10; s++) h.add(p(s * 1000));
    expect(h.points.map((x) => x.t)).toEqual([6000, 7000, 8000, 9000, 10000]);
    h.add(p(100_000));
    expect(h.points.map((x) => x.t)).toEqual([100_000]); // the rest is older than the window
  });

  it("survives a reload through storage, dropping stale and broken points", () => {
    const storage = new MemoryStorage();
    const h = new FarmHistory(100, 60_000);
    for (let s = 1; s <= 5; s++) h.add(p(s * 1000, s));
    h.save(storage);
    const again = new FarmHistory(100, 60_000);
    again.load(storage, 62_500); // points before 2,500 fall out of the window
    expect(again.points.map((x) => x.rps)).toEqual([3, 4, 5]);
    for (const broken of ["{", "null", '{"v":2}', '{"v":1,"t":"x"}', '{"v":1,"t":[1],"rps":["a"]}']) {
      storage.setItem(HISTORY_KEY, broken);
      const h2 = new FarmHistory();
      h2.load(storage, 10_000);
      expect(h2.points).toEqual([]);
    }
  });

  it("turns farm totals into a point", () => {
    const point = pointFrom(totals({ rps: 5, eps: 1, cpuMean: 20, memoryTotal: 9, healthy: 2, stopped: 1, unreachable: 1, starting: 1, p99Max: 8 }), 42);
    expect(point).toEqual({ t: 42, rps: 5, eps: 1, cpu: 20, memory: 9, healthy: 2, degraded: 0, down: 3, p99: 8 });
  });

  it("survives a storage that throws", () => {
    const h = new FarmHistory();
    const bad = {
      getItem: () => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("full");
      },
    };
    h.load(bad, 0);
    h.add(p(1000));
    h.save(bad);
    expect(h.points).toHaveLength(1);
  });
});
