import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ServerSchema } from "../gen/farm/v1/farm_pb";
import { ConnectionFaultMode, FaultProfileSchema } from "../gen/farm/v1/faults_pb";
import { describeFaults, faultLabel, remaining } from "./faults";
import { toServerView } from "./model";

const texts = (init: Parameters<typeof create<typeof FaultProfileSchema>>[1]) => describeFaults(create(FaultProfileSchema, init)).map((f) => f.text);

describe("describeFaults", () => {
  it("has nothing for an absent or empty profile", () => {
    expect(describeFaults(undefined)).toEqual([]);
    expect(describeFaults(create(FaultProfileSchema))).toEqual([]);
  });

  it("says each kind in a few words, in the proto's order", () => {
    const faults = describeFaults(
      create(FaultProfileSchema, {
        partition: {},
        readiness: {},
        health: { status: 500 },
        rateLimit: { requestsPerSecond: 1000 },
        connection: { mode: ConnectionFaultMode.RESET },
        throughput: { bytesPerSecond: 1000 },
        hang: { maxMs: 60_000 },
        abort: { statuses: [{ status: 503, weight: 20 }, { status: 500, weight: 5 }], when: { percent: 30 } },
        latency: { delayMs: 200, jitterMs: 50 },
      }),
    );
    expect(faults.map((f) => f.kind)).toEqual(["latency", "abort", "hang", "throughput", "connection", "rate_limit", "health", "readiness", "partition"]);
    expect(faults.map((f) => f.text)).toEqual([
      "latency 200±50 ms",
      "abort 503:20,500:5 · 30%",
      "hang ≤60 s",
      "throughput 1 kB/s",
      "connection reset",
      "rate limit 1000/s",
      "health 500",
      "drained",
      "partitioned",
    ]);
  });

  it("spells out the defaults the proto gives a zero", () => {
    expect(texts({ abort: {} })).toEqual(["abort 503"]);
    expect(texts({ hang: {} })).toEqual(["hang ≤60 s"]);
    expect(texts({ health: {} })).toEqual(["health 503"]);
    expect(texts({ rateLimit: { requestsPerSecond: 5, status: 429 } })).toEqual(["rate limit 5/s"]);
  });

  it("shows the variants of each kind", () => {
    expect(texts({ latency: { delayMs: 300 } })).toEqual(["latency 300 ms"]);
    expect(texts({ latency: { p50Ms: 10, p90Ms: 50, p99Ms: 400 } })).toEqual(["latency p50/p90/p99 10/50/400 ms"]);
    expect(texts({ abort: { statuses: [{ status: 500, weight: 3 }] } })).toEqual(["abort 500"]);
    expect(texts({ hang: { maxMs: 750 } })).toEqual(["hang ≤750 ms"]);
    expect(texts({ hang: { maxMs: 1500 } })).toEqual(["hang ≤1.5 s"]);
    expect(texts({ throughput: { bytesPerSecond: 512 } })).toEqual(["throughput 512 B/s"]);
    expect(texts({ throughput: { bytesPerSecond: 65_536 } })).toEqual(["throughput 65.5 kB/s"]);
    expect(texts({ throughput: { bytesPerSecond: 1_073_741_824 } })).toEqual(["throughput 1.07 GB/s"]);
    expect(texts({ connection: { mode: ConnectionFaultMode.CLOSE } })).toEqual(["connection close"]);
    expect(texts({ rateLimit: { requestsPerSecond: 50, status: 503 } })).toEqual(["rate limit 50/s → 503"]);
  });

  it("names the share of requests and the routes when not all of them, never for a partition", () => {
    expect(texts({ latency: { delayMs: 5, when: { percent: 100 } } })).toEqual(["latency 5 ms"]);
    expect(texts({ latency: { delayMs: 5, when: { percent: 0 } } })).toEqual(["latency 5 ms · 0%"]);
    expect(texts({ latency: { delayMs: 5, when: { percent: 12.5, pathPrefix: "/api" } } })).toEqual(["latency 5 ms · 12.5% · on /api"]);
    expect(texts({ health: { status: 503, when: { percent: 50 } } })).toEqual(["health 503 · 50%"]);
    expect(texts({ partition: { when: { percent: 50 } } })).toEqual(["partitioned"]);
  });

  it("keeps when each fault clears itself", () => {
    const [latency, abort] = describeFaults(create(FaultProfileSchema, { latency: { delayMs: 1, when: { expiresAtMs: 1_700_000_030_000n } }, abort: {} }));
    expect(latency.expiresAtMs).toBe(1_700_000_030_000);
    expect(abort.expiresAtMs).toBe(0);
  });
});

describe("toServerView", () => {
  it("carries the server's faults as the Watch delivers them", () => {
    expect(toServerView(create(ServerSchema, { id: 3 })).faults).toEqual([]);
    expect(toServerView(create(ServerSchema, { id: 3, faults: {} })).faults).toEqual([]);
    expect(toServerView(create(ServerSchema, { id: 3, faults: { readiness: {}, latency: { delayMs: 200 } } })).faults).toEqual([
      { kind: "latency", text: "latency 200 ms", expiresAtMs: 0 },
      { kind: "readiness", text: "drained", expiresAtMs: 0 },
    ]);
  });
});

describe("faultLabel", () => {
  const now = 1_700_000_000_000;
  it("adds the time left to a fault that clears itself", () => {
    expect(faultLabel({ kind: "latency", text: "latency 200 ms", expiresAtMs: now + 29_200 }, now)).toBe("latency 200 ms · 30 s left");
    expect(faultLabel({ kind: "latency", text: "latency 200 ms", expiresAtMs: 0 }, now)).toBe("latency 200 ms");
  });

  it("counts down in seconds, then minutes, then hours", () => {
    expect(remaining(now + 1, now)).toBe("1 s left");
    expect(remaining(now + 119_000, now)).toBe("119 s left");
    expect(remaining(now + 5 * 60_000, now)).toBe("5 min left");
    expect(remaining(now + 3 * 3_600_000, now)).toBe("3 h left");
    expect(remaining(now, now)).toBe("ending");
    expect(remaining(now - 5000, now)).toBe("ending");
  });
});
