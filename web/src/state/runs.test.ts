import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { GetRunResponseSchema, LoadSecondSchema, RunKind, RunSummarySchema, ScenarioState, type LoadSecond, type RunSummary } from "../gen/farm/v1/farm_pb";
import {
  alignTimelines,
  appendRuns,
  baselineFirst,
  compareRows,
  eventKindText,
  eventSubject,
  eventTone,
  historyState,
  kindName,
  mergeRuns,
  percentDifference,
  pointsDifference,
  relativeChange,
  runFigures,
  stamp,
  toggleChoice,
} from "./runs";

const T = 1_700_000_000_000;

function summary(runId: string, startedS: number, over: MessageInitShape<typeof RunSummarySchema> = {}): RunSummary {
  const init: MessageInitShape<typeof RunSummarySchema> = {
    runId,
    kind: runId.startsWith("sc") ? RunKind.SCENARIO : RunKind.LOAD_TEST,
    name: "GET / on all",
    state: "finished",
    startedAtMs: BigInt(T + startedS * 1000),
    endedAtMs: BigInt(T + startedS * 1000 + 2000),
    requests: 200n,
    failures: 0n,
    requestsPerSecond: 100,
    latency: { p50Ms: 1, p90Ms: 2, p99Ms: 4, p999Ms: 5, maxMs: 6, meanMs: 1.5 },
  };
  return create(RunSummarySchema, { ...init, ...over } as MessageInitShape<typeof RunSummarySchema>);
}

const second = (s: number, requests: number, p99: number, over: MessageInitShape<typeof LoadSecondSchema> = {}): LoadSecond =>
  create(LoadSecondSchema, { second: s, requests: BigInt(requests), failures: 0n, p50Ms: p99 / 2, p99Ms: p99, ...over });

describe("a run in a line", () => {
  it("names kinds and states, unknown ones too", () => {
    expect(kindName(RunKind.LOAD_TEST)).toBe("load test");
    expect(kindName(RunKind.SCENARIO)).toBe("scenario");
    expect(kindName(RunKind.UNSPECIFIED)).toBe("run");
    for (const s of ["running", "finished", "cancelled", "passed", "failed", "aborted", "error", "interrupted"]) expect(historyState(s)).toBe(s);
    expect(historyState(" Interrupted ")).toBe("interrupted");
    expect(historyState("exploded")).toBe("unknown");
  });

  it("merges the polled newest page with older pages loaded, newest first", () => {
    const page1 = [summary("lt-4", 40), summary("sc-2", 30), summary("lt-3", 20)];
    const page2 = [summary("lt-2", 10), summary("sc-1", 5)];
    const loaded = appendRuns(page1, [summary("lt-3", 20), ...page2]); // an overlap is listed once
    expect(loaded.map((r) => r.runId)).toEqual(["lt-4", "sc-2", "lt-3", "lt-2", "sc-1"]);
    // A new run pushes the newest page on; lt-4's state moved; the older pages stay.
    const fresh = [summary("lt-5", 50, { state: "running" }), summary("lt-4", 40, { state: "interrupted" }), summary("sc-2", 30)];
    const merged = mergeRuns(loaded, fresh);
    expect(merged.map((r) => r.runId)).toEqual(["lt-5", "lt-4", "sc-2", "lt-3", "lt-2", "sc-1"]);
    expect(merged[1].state).toBe("interrupted");
    // Same start: the higher id is the newer.
    expect(mergeRuns([summary("lt-7", 1), summary("lt-6", 1)], [summary("lt-8", 1)]).map((r) => r.runId)).toEqual(["lt-8", "lt-7", "lt-6"]);
    expect(mergeRuns(loaded, [])).toEqual([]);
  });

  it("keeps the last two runs chosen", () => {
    expect(toggleChoice([], "a")).toEqual(["a"]);
    expect(toggleChoice(["a"], "b")).toEqual(["a", "b"]);
    expect(toggleChoice(["a", "b"], "c")).toEqual(["b", "c"]);
    expect(toggleChoice(["a", "b"], "a")).toEqual(["b"]);
  });
});

describe("two runs side by side", () => {
  it("says a change in percent of the first, and rates in percentage points", () => {
    expect(relativeChange(100, 112.3)).toBeCloseTo(12.3);
    expect(relativeChange(0, 0)).toBe(0);
    expect(relativeChange(0, 5)).toBeNull();
    expect(relativeChange(NaN, 5)).toBeNull();
    expect(relativeChange(-10, -5)).toBeCloseTo(50);
    expect(percentDifference(100, 112.3, "higher")).toEqual({ value: expect.closeTo(12.3), text: "+12.3 %", tone: "better" });
    expect(percentDifference(100, 112.3, "lower").tone).toBe("worse");
    expect(percentDifference(4, 2, "lower")).toEqual({ value: -50, text: "-50.0 %", tone: "better" });
    expect(percentDifference(100, 100.4, "lower")).toMatchObject({ text: "+0.4 %", tone: "same" });
    expect(percentDifference(100, 99.99, "lower").text).toBe("0.0 %");
    expect(percentDifference(100, 150, "neither").tone).toBe("none");
    expect(percentDifference(0, 3, "lower")).toEqual({ value: null, text: "–", tone: "none" });
    expect(pointsDifference(0.5, 1.75, "lower")).toEqual({ value: 1.25, text: "+1.25 pp", tone: "worse" });
    expect(pointsDifference(NaN, 1, "lower").text).toBe("–");
  });

  it("takes a run's figures from the whole run where fetched, else from its line", () => {
    const line = summary("lt-1", 0, { requests: 200n, failures: 10n, requestsPerSecond: 95 });
    const fromLine = runFigures(line);
    expect(fromLine).toMatchObject({ requests: 200, failures: 10, errorRate: 5, rps: 95, durationS: 2, timeline: [] });
    expect(fromLine.latency).toEqual({ p50: 1, p90: 2, p99: 4, p999: 5, max: 6 });
    expect(runFigures(summary("lt-1", 0, { requests: 0n, endedAtMs: 0n })).errorRate).toBeNaN();
    expect(runFigures(summary("lt-1", 0, { endedAtMs: 0n })).durationS).toBeNaN();

    const timeline = [second(0, 100, 3), second(1, 100, 5)];
    const result = { requests: 200n, failures: 2n, elapsedSeconds: 2.05, requestsPerSecond: 97.6, latency: { p50Ms: 1.1, p90Ms: 2.2, p99Ms: 4.4, p999Ms: 9.9, maxMs: 12 }, timeline };
    const lt = create(GetRunResponseSchema, { run: { case: "loadTest", value: { runId: "lt-1", done: true, result } } });
    const whole = runFigures(line, lt.run);
    expect(whole).toMatchObject({ requests: 200, failures: 2, errorRate: 1, rps: 97.6, durationS: 2.05 });
    expect(whole.latency).toEqual({ p50: 1.1, p90: 2.2, p99: 4.4, p999: 9.9, max: 12 });
    expect(whole.timeline).toHaveLength(2);

    const sc = create(GetRunResponseSchema, { run: { case: "scenario", value: { runId: "sc-1", state: ScenarioState.PASSED, load: { ...result, requests: 50n, failures: 0n } } } });
    expect(runFigures(summary("sc-1", 0), sc.run)).toMatchObject({ requests: 50, errorRate: 0, durationS: 2.05 });
  });

  it("compares every figure, B against A", () => {
    const a = runFigures(summary("lt-1", 0, { requests: 200n, failures: 0n, requestsPerSecond: 100, latency: { p50Ms: 1, p90Ms: 2, p99Ms: 4, p999Ms: 5, maxMs: 6 } }));
    const b = runFigures(summary("lt-2", 10, { requests: 200n, failures: 4n, requestsPerSecond: 200, endedAtMs: BigInt(T + 11_000), latency: { p50Ms: 1, p90Ms: 3, p99Ms: 5, p999Ms: 5, maxMs: 12 } }));
    const rows = compareRows(a, b);
    expect(rows.map((r) => r.key)).toEqual(["p50", "p90", "p99", "p999", "max", "rps", "requests", "failures", "errorRate", "duration"]);
    const by = Object.fromEntries(rows.map((r) => [r.key, r]));
    expect([by.p99.a, by.p99.b, by.p99.diff.text, by.p99.diff.tone]).toEqual([4, 5, "+25.0 %", "worse"]);
    expect([by.rps.diff.text, by.rps.diff.tone]).toEqual(["+100.0 %", "better"]);
    expect(by.p50.diff).toEqual({ value: 0, text: "0.0 %", tone: "same" });
    expect([by.failures.diff.text, by.failures.diff.tone]).toEqual(["–", "none"]); // from none
    expect([by.errorRate.diff.text, by.errorRate.diff.tone]).toEqual(["+2.00 pp", "worse"]);
    expect([by.duration.a, by.duration.b, by.duration.diff.text, by.duration.diff.tone]).toEqual([2, 1, "-50.0 %", "none"]);
    expect(by.p999.label).toBe("p99.9");
  });

  it("takes the older run as the baseline", () => {
    const older = summary("lt-1", 0);
    const newer = summary("lt-2", 10);
    expect(baselineFirst(newer, older).map((r) => r.runId)).toEqual(["lt-1", "lt-2"]);
    expect(baselineFirst(older, newer).map((r) => r.runId)).toEqual(["lt-1", "lt-2"]);
  });

  it("aligns two timelines at their starts: dense, the shorter one stopping where it ended", () => {
    const a = [second(0, 100, 3), second(2, 50, 4), second(3, 10, 9, { provisional: true })];
    const b = [second(0, 200, 2), second(1, 200, 6, { failures: 200n }), second(3, 180, 2)];
    const t = alignTimelines(a, b);
    expect(t.seconds).toBe(4);
    expect(t.times).toEqual([500, 1500, 2500, 3500]);
    expect(t.a.rps).toEqual([100, 0, 50, NaN]); // an empty second is 0; after its end (a provisional second is not one yet), none
    expect(t.a.p99).toEqual([3, NaN, 4, NaN]);
    expect(t.b.rps).toEqual([200, 200, 0, 180]);
    expect(t.b.p99).toEqual([2, NaN, NaN, 2]); // a second of failures only has no latency
    expect(alignTimelines([], [])).toEqual({ times: [], a: { rps: [], p99: [] }, b: { rps: [], p99: [] }, seconds: 0 });
    expect(alignTimelines([], b).a.rps).toEqual([NaN, NaN, NaN, NaN]);
  });
});

describe("events and times", () => {
  it("gives an event a tone by what happened", () => {
    expect(eventTone({ kind: "status", detail: "healthy -> unreachable: agent disconnected" })).toBe("bad");
    expect(eventTone({ kind: "status", detail: "degraded -> healthy" })).toBe("ok");
    expect(eventTone({ kind: "status", detail: "healthy -> degraded: p99 over 500 ms" })).toBe("warn");
    expect(eventTone({ kind: "status", detail: "healthy -> stopped" })).toBe("muted");
    expect(eventTone({ kind: "status", detail: "???" })).toBe("info");
    expect(eventTone({ kind: "fault_set", detail: "latency" })).toBe("warn");
    expect(eventTone({ kind: "fault_cleared", detail: "latency" })).toBe("ok");
    expect(eventTone({ kind: "run_ended", detail: "lt-3 finished" })).toBe("info");
    expect(eventKindText("fault_set")).toBe("Fault set");
    expect(eventKindText("controller_started")).toBe("Controller started");
    expect(eventKindText("")).toBe("Event");
    expect(eventSubject(0)).toBe("farm");
    expect(eventSubject(7)).toBe("server-7");
  });

  it("stamps a time with its day when it is not today", () => {
    const at = new Date(2026, 11, 2, 14, 3, 7).getTime();
    expect(stamp(at, at + 60_000)).toBe("14:03:07");
    expect(stamp(at, at + 2 * 86_400_000)).toBe("2 Dec 14:03:07");
    expect(stamp(0, at)).toBe("–");
  });
});
