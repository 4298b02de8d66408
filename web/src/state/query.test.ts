import { describe, expect, it } from "vitest";
import { applyQuery, countByStatus, DEFAULT_QUERY } from "./query";
import { server } from "./testdata";

const farm = [
  server(1, { cpu: 50, memory: 3, rps: 1, faults: [{ kind: "latency", text: "latency 200±50 ms", expiresAtMs: 0 }] }),
  server(2, { status: "degraded", reason: "CPU at 95%", cpu: 95, memory: 1, rps: 9 }),
  server(10, { status: "stopped", reason: "stopped on request", cpu: 0, memory: 2, rps: 0 }),
  server(3, { status: "unreachable", cpu: 5, memory: 5, rps: 3, address: "10.0.0.3:8000" }),
];
const ids = (q: Partial<typeof DEFAULT_QUERY>) => applyQuery(farm, { ...DEFAULT_QUERY, ...q }).map((s) => s.id);

describe("applyQuery", () => {
  it("sorts by id by default and by each key both ways", () => {
    expect(ids({})).toEqual([1, 2, 3, 10]);
    expect(ids({ sort: "cpu", desc: true })).toEqual([2, 1, 3, 10]);
    expect(ids({ sort: "memory" })).toEqual([2, 10, 1, 3]);
    expect(ids({ sort: "rps", desc: true })).toEqual([2, 3, 1, 10]);
    expect(ids({ sort: "name" })).toEqual([1, 2, 3, 10]); // numeric-aware
    expect(ids({ sort: "status" })).toEqual([3, 2, 10, 1]); // worst first
  });

  it("filters by status and by words", () => {
    expect(ids({ statuses: new Set(["degraded", "stopped"]) })).toEqual([2, 10]);
    expect(ids({ text: "cpu" })).toEqual([2]);
    expect(ids({ text: "10.0.0" })).toEqual([3]);
    expect(ids({ text: "SERVER-1" })).toEqual([1, 10]);
    expect(ids({ text: "10" })).toEqual([3, 10]); // id 10, and 3 by its address
    expect(ids({ text: "stopped request" })).toEqual([10]);
    expect(ids({ text: "nothing-like-this" })).toEqual([]);
  });

  it("finds servers by their faults", () => {
    expect(ids({ text: "faults" })).toEqual([1]);
    expect(ids({ text: "latency" })).toEqual([1]);
    expect(ids({ text: "abort" })).toEqual([]);
  });

  it("does not reorder its input", () => {
    const before = farm.map((s) => s.id);
    ids({ sort: "cpu" });
    expect(farm.map((s) => s.id)).toEqual(before);
  });
});

describe("countByStatus", () => {
  it("counts every status", () => {
    expect(countByStatus(farm)).toEqual({ healthy: 1, degraded: 1, stopped: 1, starting: 0, unreachable: 1, unknown: 0 });
  });
});
