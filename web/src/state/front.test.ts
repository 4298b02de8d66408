import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FailoverAction, FrontResultSchema } from "../gen/farm/v1/farm_pb";
import { drillFigures, drillMarks, fairnessFigures, millis, parseWeights, readDrill, shareChart, sharePct, stack, toFrontView, type DrillForm, type ShareSecondView } from "./front";

describe("parseWeights", () => {
  it("reads ID=WEIGHT pairs, separated by commas or spaces", () => {
    expect(parseWeights("3=2, 4=1")).toEqual({
      weights: [
        { serverId: 3, weight: 2 },
        { serverId: 4, weight: 1 },
      ],
      error: null,
    });
    expect(parseWeights(" 1 = 5 2=256;server-7=1 ").weights).toEqual([
      { serverId: 1, weight: 5 },
      { serverId: 2, weight: 256 },
      { serverId: 7, weight: 1 },
    ]);
    expect(parseWeights("")).toEqual({ weights: [], error: null });
    expect(parseWeights("  ,  ")).toEqual({ weights: [], error: null });
  });

  it("names what it cannot read", () => {
    expect(parseWeights("3").error).toBe('"3" is not ID=WEIGHT, like 3=2');
    expect(parseWeights("3=x").error).toContain('"3=x"');
    expect(parseWeights("3=-1").error).toContain("is not ID=WEIGHT");
    expect(parseWeights("3=1.5").error).toContain("is not ID=WEIGHT");
    expect(parseWeights("0=1").error).toContain("start at 1");
    expect(parseWeights("3=0").error).toBe('"3=0": a weight is 1 to 256');
    expect(parseWeights("3=257").error).toContain("1 to 256");
    expect(parseWeights("3=1, 3=2").error).toBe("server 3 is named twice");
    expect(parseWeights(Array.from({ length: 1001 }, (_, i) => `${i + 1}=1`).join(",")).error).toBe("at most 1000 servers");
    // Nothing half-read comes back with an error.
    expect(parseWeights("1=1, x").weights).toEqual([]);
  });

  it("checks the servers against the farm when it knows the farm", () => {
    expect(parseWeights("9=1", new Set([1, 2, 3])).error).toBe("server 9 is not part of this farm");
    expect(parseWeights("2=1", new Set([1, 2, 3])).error).toBeNull();
    expect(parseWeights("9=1", new Set()).error).toBeNull();
  });
});

describe("readDrill", () => {
  const form = (over: Partial<DrillForm> = {}): DrillForm => ({ action: "kill", serverId: "2", atSeconds: "3", forSeconds: "2.5", ...over });

  it("turns seconds into the spec's milliseconds", () => {
    expect(readDrill(form(), 10)).toEqual({ drill: { serverId: 2, action: FailoverAction.KILL, atMs: 3000, downMs: 2500 } });
    expect(readDrill(form({ action: "health", atSeconds: "0", forSeconds: "0.0004" }), 10)).toEqual({
      drill: { serverId: 2, action: FailoverAction.HEALTH, atMs: 0, downMs: 1 },
    });
    const actions = (["kill", "stop", "pause", "health"] as const).map((action) => {
      const r = readDrill(form({ action }), 10);
      return "drill" in r ? r.drill.action : null;
    });
    expect(actions).toEqual([FailoverAction.KILL, FailoverAction.STOP, FailoverAction.PAUSE, FailoverAction.HEALTH]);
  });

  it("says what is wrong with each field", () => {
    const errors = (f: DrillForm, run: number | null = 10, farm?: Set<number>) => {
      const r = readDrill(f, run, farm);
      return "errors" in r ? r.errors : {};
    };
    expect(errors(form({ serverId: "" }))).toEqual({ serverId: "Which server to take down" });
    expect(errors(form({ serverId: "x" })).serverId).toContain('"x"');
    expect(errors(form({ serverId: "0" })).serverId).toContain("not a server id");
    expect(errors(form({ serverId: "7" }), 10, new Set([1, 2])).serverId).toBe("server 7 is not part of this farm");
    expect(Object.keys(errors(form({ atSeconds: "" })))).toEqual(["atSeconds"]);
    expect(Object.keys(errors(form({ atSeconds: "-1" })))).toEqual(["atSeconds"]);
    expect(Object.keys(errors(form({ forSeconds: "0" })))).toEqual(["forSeconds"]);
    expect(errors(form({ atSeconds: "1", forSeconds: "3601" }), 4000).forSeconds).toBe("at most 3600 s");
  });

  it("needs a run by duration that outlasts the server's return", () => {
    const run = (r: ReturnType<typeof readDrill>) => ("errors" in r ? r.errors.run : undefined);
    expect(run(readDrill(form(), null))).toContain("stop after a duration");
    expect(run(readDrill(form({ atSeconds: "7", forSeconds: "3" }), 10))).toBe("The server must be back before the run ends: 7 s + 3 s is not under the run's 10 s");
    expect(run(readDrill(form({ atSeconds: "7", forSeconds: "2.9" }), 10))).toBeUndefined();
  });
});

const second = (s: number, backends: Record<number, number>, unattributed = 0, failures = 0): ShareSecondView => {
  const map = new Map(Object.entries(backends).map(([id, n]) => [Number(id), n]));
  const requests = [...map.values()].reduce((a, b) => a + b, 0) + unattributed;
  return { second: s, requests, failures, unattributed, backends: map };
};

describe("toFrontView", () => {
  it("turns the message into plain numbers, with nulls for the times not seen", () => {
    const v = toFrontView(
      create(FrontResultSchema, {
        url: "http://127.0.0.1:8080",
        backends: [
          { serverId: 1, requests: 30n, failures: 1n, share: 0.75, expectedShare: 0.5, latency: { p50Ms: 1.5, p99Ms: 9 } },
          { serverId: 2, requests: 10n, share: 0.25, expectedShare: 0.5 },
        ],
        unattributed: 4n,
        maxMinRatio: 3,
        maxDeviation: 0.5,
        timeline: [{ second: 2, requests: 44n, failures: 5n, unattributed: 4n, backends: [{ serverId: 1, requests: 30n }, { serverId: 2, requests: 10n }] }],
        failover: { drill: { serverId: 2, action: FailoverAction.PAUSE, atMs: 1000, downMs: 2000 }, actionAtMs: 1001.5, failedRequests: 3n, firstErrorMs: 12 },
      }),
    );
    expect(v.attributed).toBe(40);
    expect(v.unattributed).toBe(4);
    expect(v.backends[0]).toEqual({ serverId: 1, requests: 30, failures: 1, share: 0.75, expectedShare: 0.5, p50Ms: 1.5, p99Ms: 9 });
    expect(v.backends[1].p99Ms).toBeNaN();
    expect(v.timeline[0].backends.get(1)).toBe(30);
    expect(v.failover).toEqual({
      serverId: 2,
      action: "pause",
      atMs: 1000,
      downMs: 2000,
      actionAtMs: 1001.5,
      backAtMs: null,
      error: "",
      firstErrorMs: 12,
      failedRequests: 3,
      failoverMs: null,
      detectionMs: null,
      readmissionMs: null,
    });
    expect(toFrontView(create(FrontResultSchema, {})).failover).toBeNull();
  });
});

describe("figures", () => {
  const view = (over: Partial<ReturnType<typeof toFrontView>>) => ({ ...toFrontView(create(FrontResultSchema, {})), ...over });

  it("formats times and shares for a person", () => {
    expect(millis(null)).toBe("not seen");
    expect(millis(0.4)).toBe("0 ms");
    expect(millis(340.6)).toBe("341 ms");
    expect(millis(2345)).toBe("2.35 s");
    expect(sharePct(1)).toBe("100%");
    expect(sharePct(0)).toBe("0%");
    expect(sharePct(1 / 3)).toBe("33.3%");
    expect(sharePct(0.9996)).toBe("100.0%");
  });

  it("says when a server got nothing, and nothing before any answer", () => {
    const values = (v: ReturnType<typeof view>) => Object.fromEntries(fairnessFigures(v).map((f) => [f.key, f.value]));
    expect(values(view({ attributed: 90, maxMinRatio: 0, maxDeviation: 2, unattributed: 1234 }))).toEqual({ ratio: "0 · a server got nothing", deviation: "200.0%", unattributed: "1,234" });
    expect(values(view({ attributed: 90, maxMinRatio: 1.0123, maxDeviation: 0.0061 }))).toEqual({ ratio: "1.012", deviation: "0.6%", unattributed: "0" });
    expect(values(view({ attributed: 0 }))).toEqual({ ratio: "–", deviation: "–", unattributed: "0" });
  });

  it("gives the drill's figures, 'not yet' while the run goes on and 'not seen' at its end", () => {
    const f = {
      serverId: 2,
      action: "kill" as const,
      atMs: 1000,
      downMs: 2000,
      actionAtMs: 1000.2,
      backAtMs: 3004,
      error: "",
      firstErrorMs: 3.2,
      failedRequests: 1520,
      failoverMs: 1250,
      detectionMs: null,
      readmissionMs: 480,
    };
    const values = (done: boolean) => Object.fromEntries(drillFigures(f, done).map((x) => [x.key, x.value]));
    expect(values(true)).toEqual({
      down: "1.00 s",
      back: "3.00 s",
      "first-error": "3 ms",
      failed: "1,520",
      failover: "1.25 s",
      detection: "not seen",
      readmission: "480 ms",
    });
    expect(values(false).detection).toBe("not yet");
  });
});

describe("shareChart", () => {
  it("fills the seconds the timeline leaves out and stacks shares to 100%", () => {
    const chart = shareChart([second(0, { 1: 3, 2: 1 }), second(2, { 1: 2 }, 2)]);
    expect(chart.seconds).toEqual([0, 1, 2]);
    expect(chart.max).toBe(100);
    expect(chart.series.map((s) => s.key)).toEqual(["server-1", "server-2", "unattributed"]);
    expect(chart.series[0].values).toEqual([75, 0, 50]);
    expect(chart.series[1].values).toEqual([25, 0, 0]);
    expect(chart.series[2].values).toEqual([0, 0, 50]);
    expect(stack(chart.series).map((b) => b.upper)).toEqual([
      [75, 0, 50],
      [100, 0, 50],
      [100, 0, 100],
    ]);
    expect(stack(chart.series)[1].lower).toEqual([75, 0, 50]);
  });

  it("counts requests in requests mode, scaled to the busiest second", () => {
    const chart = shareChart([second(0, { 1: 3, 2: 1 }), second(1, { 2: 7 }, 1)], { mode: "requests" });
    expect(chart.series.map((s) => s.values)).toEqual([
      [3, 0],
      [1, 7],
      [0, 1],
    ]);
    expect(chart.max).toBe(8);
  });

  it("keeps the busiest servers and the pinned one, folding the rest into others", () => {
    // Server i answers i requests: 20 is the busiest.
    const backends = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [i + 1, i + 1]));
    const chart = shareChart([second(0, backends)], { top: 3, pinned: [2], mode: "requests" });
    expect(chart.series.map((s) => s.label)).toEqual(["server-2", "server-19", "server-20", "17 others"]);
    expect(chart.othersCount).toBe(17);
    const others = 210 - 2 - 19 - 20;
    expect(chart.series[3].values).toEqual([others]);
    // Nothing is lost in the folding.
    expect(stack(chart.series).at(-1)!.upper).toEqual([210]);
  });

  it("does not fold a single server into others, and has no unattributed series without any", () => {
    const chart = shareChart([second(0, { 1: 1, 2: 1, 3: 1, 4: 1 })], { top: 3 });
    expect(chart.series.map((s) => s.key)).toEqual(["server-1", "server-2", "server-3", "server-4"]);
    expect(chart.othersCount).toBe(0);
  });

  it("is empty before the first second", () => {
    const chart = shareChart([]);
    expect(chart).toEqual({ seconds: [], series: [], max: 100, othersCount: 0 });
    expect(stack(chart.series)).toEqual([]);
  });
});

describe("drillMarks", () => {
  const f = (actionAtMs: number | null, backAtMs: number | null) => ({
    serverId: 1,
    action: "stop" as const,
    atMs: 1000,
    downMs: 1000,
    actionAtMs,
    backAtMs,
    error: "",
    firstErrorMs: null,
    failedRequests: 0,
    failoverMs: null,
    detectionMs: null,
    readmissionMs: null,
  });

  it("marks the moments seen, and the band the server was down over", () => {
    expect(drillMarks(null, 5)).toEqual({ down: null, back: null, band: null });
    expect(drillMarks(f(null, null), 5)).toEqual({ down: null, back: null, band: null });
    // Still down: the band runs to the end of the data.
    expect(drillMarks(f(1500, null), 4)).toEqual({ down: 1.5, back: null, band: [1.5, 4] });
    expect(drillMarks(f(1500, 3250), 6)).toEqual({ down: 1.5, back: 3.25, band: [1.5, 3.25] });
  });
});
