import { describe, expect, it } from "vitest";
import { Ring, ServerSeries, SPARK_POINTS } from "./ring";

describe("Ring", () => {
  it("keeps the last N values, oldest first", () => {
    const r = new Ring(3);
    expect(r.toArray()).toEqual([]);
    expect(r.last()).toBeNaN();
    for (const v of [1, 2, 3, 4, 5]) r.push(v);
    expect(r.length).toBe(3);
    expect(r.toArray()).toEqual([3, 4, 5]);
    expect(r.at(0)).toBe(3);
    expect(r.at(3)).toBeNaN();
    expect(r.last()).toBe(5);
    r.clear();
    expect(r.length).toBe(0);
  });

  it("refuses a zero capacity", () => {
    expect(() => new Ring(0)).toThrow();
  });

  it("stays bounded under a long stream", () => {
    const s = new ServerSeries();
    for (let t = 1; t <= 10_000; t++) s.push(t, t, t, t);
    expect(s.cpu.length).toBe(SPARK_POINTS);
    expect(s.cpu.at(0)).toBe(10_000 - SPARK_POINTS + 1);
    expect(s.push(10_000, 0, 0, 0)).toBe(false);
    expect(s.push(0, 0, 0, 0)).toBe(false);
  });
});
