import { describe, expect, it } from "vitest";
import { FailoverAction } from "../gen/farm/v1/farm_pb";
import { buildSpec, hasErrors, type LoadTestForm } from "./loadtest";

const form = (over: Partial<LoadTestForm> = {}): LoadTestForm => ({
  targets: "all",
  selected: [],
  idText: "",
  method: "GET",
  path: "/",
  stopBy: "requests",
  requests: 2000,
  seconds: 10,
  model: "closed",
  concurrency: 10,
  ratePerSecond: 200,
  timeoutMs: 10_000,
  front: null,
  ...over,
});

const errorsOf = (f: LoadTestForm, farm?: Set<number>) => {
  const r = buildSpec(f, farm);
  return "errors" in r ? r.errors : {};
};

describe("buildSpec", () => {
  it("sends to the servers chosen, stopping after requests or a duration", () => {
    expect(buildSpec(form())).toEqual({
      spec: { serverIds: [], path: "/", method: "GET", concurrency: 10, totalRequests: 2000n, durationSeconds: 0, timeoutMs: 10_000, ratePerSecond: 0 },
    });
    const r = buildSpec(form({ targets: "selected", selected: [5, 2], stopBy: "duration", seconds: 30, model: "open" }));
    expect(r).toMatchObject({ spec: { serverIds: [2, 5], totalRequests: 0n, durationSeconds: 30, ratePerSecond: 200 } });
    expect(buildSpec(form({ targets: "ids", idText: "1-3, 7" }))).toMatchObject({ spec: { serverIds: [1, 2, 3, 7] } });
  });

  it("refuses targets it cannot read, or none", () => {
    expect(errorsOf(form({ targets: "ids", idText: "1, x" })).targets).toContain('Targets: "x"');
    expect(errorsOf(form({ targets: "ids", idText: "" })).targets).toBe("Choose at least one target server");
    expect(errorsOf(form({ targets: "selected", selected: [] })).targets).toBe("Choose at least one target server");
  });

  it("sends everything through a front, with its weights and drill, and no server targets", () => {
    const r = buildSpec(
      form({
        targets: "ids",
        idText: "not read through a front",
        stopBy: "duration",
        seconds: 20,
        front: { url: " http://127.0.0.1:8080 ", weights: "3=2, 4=1", drill: { action: "pause", serverId: "3", atSeconds: "5", forSeconds: "4" } },
      }),
    );
    expect(r).toEqual({
      spec: {
        serverIds: [],
        path: "/",
        method: "GET",
        concurrency: 10,
        totalRequests: 0n,
        durationSeconds: 20,
        timeoutMs: 10_000,
        ratePerSecond: 0,
        frontUrl: "http://127.0.0.1:8080",
        weights: [
          { serverId: 3, weight: 2 },
          { serverId: 4, weight: 1 },
        ],
        failover: { serverId: 3, action: FailoverAction.PAUSE, atMs: 5000, downMs: 4000 },
      },
    });
    const plain = buildSpec(form({ front: { url: "http://[::1]:81", weights: "", drill: null } }));
    expect(plain).toMatchObject({ spec: { frontUrl: "http://[::1]:81", weights: [], totalRequests: 2000n } });
    expect("spec" in plain && plain.spec.failover).toBeUndefined();
  });

  it("names each front field at fault, all at once", () => {
    const e = errorsOf(
      form({ front: { url: "  ", weights: "3:2", drill: { action: "kill", serverId: "9", atSeconds: "1", forSeconds: "" } } }),
      new Set([1, 2, 3]),
    );
    expect(e.frontUrl).toBe("The front's URL, like http://127.0.0.1:8080");
    expect(e.weights).toBe('"3:2" is not ID=WEIGHT, like 3=2');
    expect(e.drill?.serverId).toBe("server 9 is not part of this farm");
    expect(e.drill?.forSeconds).toBeDefined();
    // The run stops after requests: a drill cannot be measured.
    expect(e.drill?.run).toContain("stop after a duration");
    expect(e.targets).toBeUndefined();
  });

  it("leaves the front's host to the controller, which knows the farm's networks", () => {
    expect(buildSpec(form({ front: { url: "http://10.1.2.3:80", weights: "", drill: null } }))).toMatchObject({ spec: { frontUrl: "http://10.1.2.3:80" } });
  });
});

describe("hasErrors", () => {
  it("counts a drill with no errors as none", () => {
    expect(hasErrors({})).toBe(false);
    expect(hasErrors({ drill: {} })).toBe(false);
    expect(hasErrors({ drill: { run: "x" } })).toBe(true);
    expect(hasErrors({ weights: "x" })).toBe(true);
  });
});
