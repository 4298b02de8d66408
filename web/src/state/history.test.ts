import { describe, expect, it } from "vitest";
import { FarmHistory, farmPointsFrom, HISTORY_KEY, historyTime, mergePoints, pointFrom, type FarmPoint, type MetricHistory } from "./history";
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

describe("the controller's history merged with the page's points", () => {
  const at = (...ts: number[]) => ts.map((t) => ({ t, from: "history" }));
  const own = (...ts: number[]) => ts.map((t) => ({ t, from: "page" }));
  const show = (pts: { t: number; from: string }[]) => pts.map((x) => `${x.from[0]}${x.t}`).join(" ");

  it("keeps the page's points, and the history's before, after and in their gaps", () => {
    const merged = mergePoints(at(1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000), own(3100, 3950, 7900, 8600), 1000);
    // 1000 and 2000 come before; 3000 and 4000 are the page's seconds; 5000 (1,050 ms from
    // 3950) and 6000 fill its gap; 7000 and 8000 are too close to 7900; 9000 is after its last.
    expect(show(merged)).toBe("h1000 h2000 p3100 p3950 h5000 h6000 p7900 p8600 h9000");
    expect(show(mergePoints(at(1000, 2000), [], 1000))).toBe("h1000 h2000");
    expect(show(mergePoints([], own(1000), 1000))).toBe("p1000");
    // Live points after a refresh's last sample stay (the refresh is the newer source).
    expect(show(mergePoints(own(1000, 2000, 3000, 3400), at(1000, 2000, 3000), 1000))).toBe("h1000 h2000 h3000 p3400");
  });

  it("turns the farm's history into overview points against its size now", () => {
    const h: MetricHistory = { resolutionMs: 1000, points: [{ atMs: 5000, cpu: 120, memory: 3e6, rps: 40, eps: 2, healthy: 3 }] };
    expect(historyTime(h.points[0], 60_000)).toBe(35_000);
    expect(farmPointsFrom(h, 4)).toEqual([{ t: 5500, rps: 40, eps: 2, cpu: 30, memory: 3e6, healthy: 3, degraded: 0, down: 1, p99: 0 }]);
    expect(farmPointsFrom(h, 0)[0]).toMatchObject({ cpu: 120, down: 0 });
  });

  it("fills a page's history: its own points win, points after now are left out", () => {
    const h = new FarmHistory(100, 60_000);
    for (const t of [50_000, 51_000, 52_000]) h.add(p(t, 9));
    const before = h.revision;
    h.fill([p(30_000, 1), p(31_000, 1), p(50_500, 1), p(53_000, 1), p(70_000, 1)], 60_000);
    expect(h.points.map((x) => [x.t, x.rps])).toEqual([
      [30_000, 1],
      [31_000, 1],
      [50_000, 9],
      [51_000, 9],
      [52_000, 9],
      [53_000, 1],
    ]);
    expect(h.revision).toBe(before + 1);
    // A live point goes on from there.
    h.add(p(60_000, 7));
    expect(h.points.at(-1)?.rps).toBe(7);
    // Nothing to fill in: no change.
    const r = h.revision;
    h.fill([p(99_000)], 60_000);
    expect(h.revision).toBe(r);
    // Bounded as added points are.
    const small = new FarmHistory(3, 10_000);
    small.fill([p(1000), p(2000), p(45_000), p(46_000), p(47_000), p(48_000)], 50_000);
    expect(small.points.map((x) => x.t)).toEqual([46_000, 47_000, 48_000]);
  });
});
