import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LoadSecondSchema, ScenarioReportSchema, ScenarioState, ScenarioVerdictSchema, type ScenarioReport } from "../gen/farm/v1/farm_pb";
import {
  bandBoxes,
  bandsAt,
  bandSummary,
  farmBands,
  formatFigure,
  lineOffset,
  runBands,
  runRange,
  RunsPoller,
  runState,
  timelineSeries,
  verdictCounts,
  verdictUnit,
  verdictView,
  type Band,
} from "./scenario";

const T = 1_700_000_000_000;

/** Two phases of 4 s, a latency fault on server 2 from 2 s for 3 s, a restart of 3 at 6 s. */
function report(over: MessageInitShape<typeof ScenarioReportSchema> = {}): ScenarioReport {
  return create(ScenarioReportSchema, {
    runId: "sc-1",
    name: "two phases",
    state: ScenarioState.RUNNING,
    startedAtMs: BigInt(T - 500),
    loadStartedAtMs: BigInt(T),
    phases: [
      { name: "warm", startMs: 0, endMs: 4000, rateFrom: 50, rateTo: 50 },
      { name: "peak", startMs: 4000, endMs: 8000, rateFrom: 50, rateTo: 50 },
    ],
    faults: [
      { id: "slow", kind: "latency", serverIds: [2], atMs: 2000, forMs: 3000, appliedMs: 2010, endedMs: 5020 },
      { id: "bounce", kind: "restart", serverIds: [3], atMs: 6000, forMs: 0, appliedMs: 6005 },
    ],
    ...over,
  });
}

const verdict = (over: MessageInitShape<typeof ScenarioVerdictSchema>) => create(ScenarioVerdictSchema, { assertion: "latency.p99 < 300ms", threshold: 300, ...over });

describe("runState and verdicts", () => {
  it("names the states", () => {
    expect(runState(ScenarioState.RUNNING)).toBe("running");
    expect(runState(ScenarioState.PASSED)).toBe("passed");
    expect(runState(ScenarioState.FAILED)).toBe("failed");
    expect(runState(ScenarioState.ABORTED)).toBe("aborted");
    expect(runState(ScenarioState.ERROR)).toBe("error");
    expect(runState(ScenarioState.UNSPECIFIED)).toBe("unknown");
  });

  it("counts passed and failed verdicts, and the provisional ones among them", () => {
    expect(verdictCounts([])).toEqual({ passed: 0, failed: 0, provisional: 0 });
    expect(verdictCounts([verdict({ passed: true, final: true }), verdict({ passed: false, final: false }), verdict({ passed: true, final: false })])).toEqual({ passed: 2, failed: 1, provisional: 2 });
  });

  it("marks a verdict provisional until it is final", () => {
    expect(verdictView(verdict({ passed: true, final: false, observed: 12.5 })).status).toBe("passing");
    expect(verdictView(verdict({ passed: false, final: false, observed: 412 })).status).toBe("failing");
    expect(verdictView(verdict({ passed: true, final: true })).status).toBe("passed");
    const failed = verdictView(verdict({ passed: false, final: true, observed: 412.04, detail: "p99 412.0 ms against < 300 ms: 112.0 ms over", line: 14 }));
    expect(failed).toEqual({
      assertion: "latency.p99 < 300ms",
      line: 14,
      status: "failed",
      passed: false,
      final: true,
      observed: "412 ms",
      threshold: "300 ms",
      detail: "p99 412.0 ms against < 300 ms: 112.0 ms over",
    });
  });

  it("says a recovery not seen is not yet seen while provisional, and never once final", () => {
    const recover = { assertion: "recover from slow2: latency.p99 < 100ms within 3s for 2s", observed: -1, threshold: 3 };
    expect(verdictView(verdict({ ...recover, final: false }))).toMatchObject({ observed: "not yet", threshold: "3 s", status: "failing" });
    expect(verdictView(verdict({ ...recover, final: true }))).toMatchObject({ observed: "never", status: "failed" });
    expect(verdictView(verdict({ ...recover, observed: 0.99, passed: true, final: true }))).toMatchObject({ observed: "0.99 s", status: "passed" });
  });

  it("reads the unit from the metric", () => {
    expect(verdictUnit("latency.p50 < 0.001ms")).toBe("ms");
    expect(verdictUnit("error_rate < 1% during peak")).toBe("ratio");
    expect(verdictUnit("throughput >= 45")).toBe("rps");
    expect(verdictUnit("recovery < 5s after slow")).toBe("seconds");
    expect(verdictUnit("something_else > 1")).toBe("number");
  });

  it("formats figures in their unit", () => {
    expect(formatFigure(0.001, "ms")).toBe("0.001 ms");
    expect(formatFigure(1234.5, "ms")).toBe("1,235 ms");
    expect(formatFigure(0.0125, "ratio")).toBe("1.25%");
    expect(formatFigure(0, "ratio")).toBe("0%");
    expect(formatFigure(48.52, "rps")).toBe("48.52 req/s");
    expect(formatFigure(-1, "seconds", true)).toBe("never");
    expect(formatFigure(3.2, "seconds", false)).toBe("3.2 s");
    expect(formatFigure(NaN, "ms")).toBe("–");
  });
});

describe("runBands", () => {
  it("puts the phases and the faults on the wall clock from the load's start", () => {
    const bands = runBands(report());
    expect(bands.map((b) => [b.kind, b.label, b.start - T, b.end - T, b.instant])).toEqual([
      ["phase", "warm", 0, 4000, false],
      ["phase", "peak", 4000, 8000, false],
      ["fault", "slow · latency", 2010, 5020, false],
      ["fault", "bounce · restart", 6005, 6005, true],
    ]);
    expect(bands.every((b) => b.live && b.runId === "sc-1")).toBe(true);
    expect(bands[2].serverIds).toEqual([2]);
    expect(new Set(bands.map((b) => b.key)).size).toBe(4);
  });

  it("has none before the load starts", () => {
    expect(runBands(report({ loadStartedAtMs: 0n }))).toEqual([]);
  });

  it("runs a fault that has not ended to now while the run goes on, and leaves out one not applied", () => {
    const r = report({
      faults: [
        { id: "slow", kind: "latency", serverIds: [2], atMs: 2000, forMs: 3000, appliedMs: 2010 },
        { id: "later", kind: "abort", serverIds: [1], atMs: 6000, forMs: 1000 },
        { id: "broken", kind: "pause", serverIds: [1], atMs: 1000, forMs: 1000, appliedMs: 1030, error: "server 1 is not running" },
        { id: "stuck", kind: "stop", serverIds: [3], atMs: 500, forMs: 1000, appliedMs: 510, endedMs: 1520, error: "undoing it: server 3 did not start" },
      ],
    });
    expect(runBands(r, T + 3500).filter((b) => b.kind === "fault").map((b) => [b.label, b.start - T, b.end - T])).toEqual([
      ["slow · latency", 2010, 3500],
      ["stuck · stop", 510, 1520],
    ]);
    // Without a now: to the chart's right edge.
    expect(runBands(r).find((b) => b.kind === "fault")!.end).toBe(Infinity);
  });

  it("takes a fault planned at 0 as applied at the load's start", () => {
    const r = report({ faults: [{ id: "first", kind: "latency", serverIds: [1], atMs: 0, forMs: 1000 }] });
    expect(runBands(r, T + 500).filter((b) => b.kind === "fault").map((b) => [b.start - T, b.end - T])).toEqual([[0, 500]]);
  });

  it("stops an aborted run's phases and open faults where its load stopped", () => {
    const r = report({
      state: ScenarioState.ABORTED,
      endedAtMs: BigInt(T + 5200),
      load: { elapsedSeconds: 4.5 },
      faults: [{ id: "slow", kind: "latency", serverIds: [2], atMs: 2000, forMs: 3000, appliedMs: 2010 }],
      phases: [
        { name: "warm", startMs: 0, endMs: 4000 },
        { name: "peak", startMs: 4000, endMs: 8000 },
        { name: "cool", startMs: 8000, endMs: 9000 },
      ],
    });
    const bands = runBands(r, T + 99_000);
    expect(bands.map((b) => [b.label, b.start - T, b.end - T, b.live])).toEqual([
      ["warm", 0, 4000, false],
      ["peak", 4000, 4500, false],
      ["slow · latency", 2010, 4500, false],
    ]);
  });

  it("keeps a finished run's planned phases whole", () => {
    const r = report({ state: ScenarioState.FAILED, endedAtMs: BigInt(T + 9000), load: { elapsedSeconds: 7.98 } });
    expect(runBands(r).filter((b) => b.kind === "phase").map((b) => b.end - T)).toEqual([4000, 8000]);
  });

  it("gives a server's charts every phase and only the faults on that server", () => {
    const other = report({ runId: "sc-2", faults: [{ id: "slow", kind: "latency", serverIds: [1, 2], atMs: 0, forMs: 1000, appliedMs: 5, endedMs: 1005 }] });
    const labels = (bands: Band[]) => bands.map((b) => `${b.runId}:${b.label}`);
    expect(labels(farmBands([report(), other]))).toEqual([
      "sc-1:warm", "sc-1:peak", "sc-1:slow · latency", "sc-1:bounce · restart",
      "sc-2:warm", "sc-2:peak", "sc-2:slow · latency",
    ]);
    expect(labels(farmBands([report(), other], 2))).toEqual(["sc-1:warm", "sc-1:peak", "sc-1:slow · latency", "sc-2:warm", "sc-2:peak", "sc-2:slow · latency"]);
    expect(labels(farmBands([report(), other], 3))).toEqual(["sc-1:warm", "sc-1:peak", "sc-1:bounce · restart", "sc-2:warm", "sc-2:peak"]);
    expect(labels(farmBands([report(), other], 4))).toEqual(["sc-1:warm", "sc-1:peak", "sc-2:warm", "sc-2:peak"]);
  });
});

describe("bandBoxes", () => {
  const band = (kind: "phase" | "fault", start: number, end: number, label = `${kind}${start}`): Band => ({
    key: `${kind}/${label}`, kind, label, start, end, instant: start === end && kind === "fault", serverIds: [], runId: "sc-1", live: false, index: 0,
  });

  it("places bands as fractions of the window, clipped, and leaves out those outside", () => {
    const boxes = bandBoxes([band("phase", 0, 4000), band("phase", 4000, 12_000), band("phase", 20_000, 30_000), band("fault", 9000, Infinity)], 2000, 10_000);
    expect(boxes.map((b) => [b.band.label, b.x0, b.x1, b.cutStart, b.cutEnd])).toEqual([
      ["phase0", 0, 0.25, true, false],
      ["phase4000", 0.25, 1, false, true],
      ["fault9000", 0.875, 1, false, true],
    ]);
  });

  it("keeps a moment as a zero-width box", () => {
    const [box] = bandBoxes([band("fault", 5000, 5000)], 0, 10_000);
    expect([box.x0, box.x1, box.band.instant]).toEqual([0.5, 0.5, true]);
  });

  it("puts overlapping faults on separate lanes, and reuses a lane once it is free", () => {
    const boxes = bandBoxes([band("fault", 0, 5000, "a"), band("fault", 1000, 3000, "b"), band("fault", 4000, 6000, "c"), band("fault", 5500, 7000, "d")], 0, 10_000);
    expect(boxes.map((b) => [b.band.label, b.lane])).toEqual([["a", 0], ["b", 1], ["c", 1], ["d", 0]]);
  });

  it("keeps a lane taken while a fault's label needs the room", () => {
    const bands = [band("fault", 0, 500, "a"), band("fault", 1000, 1500, "b"), band("fault", 4000, 4500, "c")];
    expect(bandBoxes(bands, 0, 10_000).map((b) => b.lane)).toEqual([0, 0, 0]);
    expect(bandBoxes(bands, 0, 10_000, 0.2).map((b) => b.lane)).toEqual([0, 1, 0]);
    expect(bandBoxes(bands, 0, 10_000, (b) => (b.label === "a" ? 0.5 : 0)).map((b) => b.lane)).toEqual([0, 1, 1]);
  });

  it("draws nothing in an empty window", () => {
    expect(bandBoxes([band("phase", 0, 10)], 5, 5)).toEqual([]);
  });

  it("says what a chart shows, and which bands cover a moment", () => {
    const bands = runBands(report({ state: ScenarioState.PASSED }));
    expect(bandSummary(bandBoxes(bands, T, T + 8000))).toBe("phases: warm, peak; faults: slow · latency (server 2), bounce · restart (server 3)");
    expect(bandSummary([])).toBe("");
    expect(bandsAt(bands, T + 3000).map((b) => b.label)).toEqual(["warm", "slow · latency"]);
    expect(bandsAt(bands, T + 6200, 500).map((b) => b.label)).toEqual(["peak", "bounce · restart"]);
  });
});

describe("timelineSeries", () => {
  const second = (s: number, requests: number, failures = 0, p99 = 5, provisional = false) =>
    create(LoadSecondSchema, { second: s, requests: BigInt(requests), failures: BigInt(failures), p50Ms: p99 / 2, p99Ms: p99, provisional });

  it("is dense from second 0, on the wall clock", () => {
    const s = timelineSeries([second(0, 50), second(2, 40, 10, 9)], T);
    expect(s.times).toEqual([T + 500, T + 1500, T + 2500]);
    expect(s.requests).toEqual([50, 0, 40]);
    expect(s.failures).toEqual([0, 0, 10]);
    expect(s.p99).toEqual([5, NaN, 9]);
    expect(s.p50).toEqual([2.5, NaN, 4.5]);
  });

  it("leaves out provisional seconds, and has no latency for a second where everything failed", () => {
    const s = timelineSeries([second(0, 50), second(1, 20, 20, 0), second(2, 12, 0, 5, true)], T);
    expect(s.requests).toEqual([50, 20]);
    expect(s.p99).toEqual([5, NaN]);
    expect(timelineSeries([], T).times).toEqual([]);
  });
});

describe("runRange", () => {
  it("spans the plan, what was measured, and now while it runs", () => {
    expect(runRange(report(), T + 3000)).toEqual([T, T + 8000]);
    expect(runRange(report(), T + 9500)).toEqual([T, T + 9500]);
    const finished = report({ state: ScenarioState.FAILED, load: { timeline: [{ second: 8 }] } });
    expect(runRange(finished, T + 60_000)).toEqual([T, T + 9000]);
    expect(runRange(report({ loadStartedAtMs: 0n }), T)).toBeNull();
  });
});

describe("lineOffset", () => {
  it("finds where a line starts", () => {
    const text = "name: x\nload:\n  phases: []\n";
    expect(lineOffset(text, 1)).toBe(0);
    expect(lineOffset(text, 2)).toBe(8);
    expect(text.slice(lineOffset(text, 3))).toBe("  phases: []\n");
    expect(lineOffset(text, 0)).toBe(0);
    expect(lineOffset(text, 99)).toBe(0);
  });
});

describe("RunsPoller", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("polls while subscribed, every 2 s, and stops when the last subscriber leaves", async () => {
    const list = vi.fn(async () => [report()]);
    const poller = new RunsPoller({ list });
    expect(list).not.toHaveBeenCalled();
    const heard = vi.fn();
    const a = poller.subscribe(heard);
    const b = poller.subscribe(() => {});
    await vi.advanceTimersByTimeAsync(0);
    expect(list).toHaveBeenCalledTimes(1);
    expect(poller.getSnapshot()).toMatchObject({ error: null, unsupported: false, loaded: true });
    expect(poller.getSnapshot().runs[0].runId).toBe("sc-1");
    expect(heard).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(list).toHaveBeenCalledTimes(2);
    a();
    await vi.advanceTimersByTimeAsync(2000);
    expect(list).toHaveBeenCalledTimes(3);
    b();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(list).toHaveBeenCalledTimes(3);
  });

  it("keeps the last runs on a failure, and slows down for a controller without scenarios", async () => {
    let fail: Error | null = null;
    const list = vi.fn(async () => {
      if (fail) throw fail;
      return [report()];
    });
    const poller = new RunsPoller({ list, isUnsupported: (e) => (e as Error).message === "unimplemented", unsupportedEveryMs: 60_000 });
    const stop = poller.subscribe(() => {});
    await vi.advanceTimersByTimeAsync(0);
    fail = new Error("unavailable");
    await vi.advanceTimersByTimeAsync(2000);
    expect(poller.getSnapshot()).toMatchObject({ error: "unavailable", unsupported: false });
    expect(poller.getSnapshot().runs).toHaveLength(1);
    fail = new Error("unimplemented");
    await vi.advanceTimersByTimeAsync(2000);
    expect(poller.getSnapshot().unsupported).toBe(true);
    const calls = list.mock.calls.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(list).toHaveBeenCalledTimes(calls);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(list).toHaveBeenCalledTimes(calls + 1);
    stop();
  });

  it("polls at once on refresh, dropping the answer of the call it replaces", async () => {
    let answer = "sc-old";
    const resolvers: (() => void)[] = [];
    const list = vi.fn(
      (signal: AbortSignal) =>
        new Promise<ScenarioReport[]>((resolve, reject) => {
          const id = answer;
          signal.addEventListener("abort", () => reject(new Error("aborted")));
          resolvers.push(() => resolve([report({ runId: id })]));
        }),
    );
    const poller = new RunsPoller({ list });
    const stop = poller.subscribe(() => {});
    answer = "sc-new";
    poller.refresh();
    expect(list).toHaveBeenCalledTimes(2);
    resolvers[0]();
    resolvers[1]();
    await vi.advanceTimersByTimeAsync(0);
    expect(poller.getSnapshot().runs.map((r) => r.runId)).toEqual(["sc-new"]);
    // Without subscribers, refresh does nothing.
    stop();
    poller.refresh();
    expect(list).toHaveBeenCalledTimes(2);
  });
});
