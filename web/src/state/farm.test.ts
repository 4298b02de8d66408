import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { applyUpdate, emptyFarm, markUnsynced, updateSeries } from "./farm";
import { toWatchUpdate } from "./model";
import { ServerSeries } from "./ring";
import { server, totals, update } from "./testdata";
import { ServerStatus, WatchResponseSchema } from "../gen/farm/v1/farm_pb";
import { NodeState } from "../gen/farm/v1/agent_pb";

describe("applyUpdate", () => {
  it("a full snapshot replaces everything, ordered by id", () => {
    let s = applyUpdate(emptyFarm(), update({ full: true, servers: [server(3), server(1)], version: 5 }));
    expect(s.ordered.map((x) => x.id)).toEqual([1, 3]);
    expect(s.synced).toBe(true);
    s = applyUpdate(s, update({ full: true, servers: [server(2)], version: 1 }));
    expect(s.ordered.map((x) => x.id)).toEqual([2]);
    expect(s.version).toBe(1);
  });

  it("a delta changes, adds and removes servers, and keeps untouched objects", () => {
    const one = server(1);
    const s0 = applyUpdate(emptyFarm(), update({ full: true, servers: [one, server(2), server(3)], version: 1 }));
    const s1 = applyUpdate(
      s0,
      update({ servers: [server(2, { status: "stopped" }), server(4)], removed: [3], version: 2, totals: totals({ total: 3 }) }),
    );
    expect(s1.ordered.map((x) => [x.id, x.status])).toEqual([
      [1, "healthy"],
      [2, "stopped"],
      [4, "healthy"],
    ]);
    expect(s1.servers.get(1)).toBe(one);
    expect(s1.totals?.total).toBe(3);
    expect(s0.servers.get(2)?.status).toBe("healthy"); // the old state is untouched
  });

  it("removing an unknown id or an empty delta keeps the servers", () => {
    const s0 = applyUpdate(emptyFarm(), update({ full: true, servers: [server(1)], version: 1 }));
    const s1 = applyUpdate(s0, update({ removed: [42], version: 2 }));
    expect(s1.ordered.map((x) => x.id)).toEqual([1]);
    const s2 = applyUpdate(s1, update({ version: 3, totals: totals({ rps: 7 }) }));
    expect(s2.servers).toBe(s1.servers);
    expect(s2.totals?.rps).toBe(7);
    expect(s2.version).toBe(3);
  });

  it("ignores a delta older than the state, but not a snapshot", () => {
    const s0 = applyUpdate(emptyFarm(), update({ full: true, servers: [server(1)], version: 10 }));
    expect(applyUpdate(s0, update({ servers: [server(1, { cpu: 99 })], version: 9 }))).toBe(s0);
    // After a controller restart versions start again: the new snapshot wins.
    const s1 = applyUpdate(markUnsynced(s0), update({ full: true, servers: [server(5)], version: 1 }));
    expect(s1.ordered.map((x) => x.id)).toEqual([5]);
    const s2 = applyUpdate(s1, update({ servers: [server(5, { cpu: 50 })], version: 2 }));
    expect(s2.servers.get(5)?.cpu).toBe(50);
  });

  it("markUnsynced keeps the servers shown until the next snapshot", () => {
    const s0 = applyUpdate(emptyFarm(), update({ full: true, servers: [server(1)], version: 1 }));
    const s1 = markUnsynced(s0);
    expect(s1.synced).toBe(false);
    expect(s1.ordered).toBe(s0.ordered);
  });
});

describe("updateSeries", () => {
  it("appends one point per new sample and forgets servers that left", () => {
    const series = new Map<number, ServerSeries>();
    updateSeries(series, update({ full: true, servers: [server(1, { sampleMs: 1000, cpu: 5 }), server(2)] }));
    updateSeries(series, update({ servers: [server(1, { sampleMs: 1000, cpu: 6 })] })); // same sample
    updateSeries(series, update({ servers: [server(1, { sampleMs: 2000, cpu: 7 })] }));
    expect(series.get(1)?.cpu.toArray()).toEqual([5, 7]);
    updateSeries(series, update({ removed: [2] }));
    expect([...series.keys()]).toEqual([1]);
    updateSeries(series, update({ full: true, servers: [server(3)] }));
    expect([...series.keys()]).toEqual([3]);
  });
});

describe("toWatchUpdate", () => {
  it("converts the generated message, bigints included", () => {
    const message = create(WatchResponseSchema, {
      full: true,
      version: 7n,
      removedServerIds: [9],
      servers: [
        {
          id: 4,
          name: "server-4",
          status: ServerStatus.DEGRADED,
          statusReason: "CPU at 95%",
          nodeAddress: "127.0.0.1:8004",
          requestsPerSecond: 12.5,
          metrics: { timestampMs: 1_700_000_000_000n, cpuPercent: 95, memoryBytes: 3n << 30n, nodeState: NodeState.RUNNING },
        },
        { id: 5, status: ServerStatus.UNSPECIFIED },
      ],
      metrics: { serversTotal: 2, degraded: 1, memoryBytesTotal: 123n, requestsPerSecond: 12.5 },
    });
    const u = toWatchUpdate(message);
    expect(u.full).toBe(true);
    expect(u.version).toBe(7);
    expect(u.removed).toEqual([9]);
    expect(u.servers[0]).toMatchObject({
      id: 4, status: "degraded", reason: "CPU at 95%", cpu: 95, memory: 3 * 2 ** 30,
      sampleMs: 1_700_000_000_000, nodeState: "running", rps: 12.5,
    });
    expect(u.servers[1]).toMatchObject({ id: 5, name: "server-5", status: "unknown", sampleMs: 0, nodeState: "unknown" });
    expect(u.totals).toMatchObject({ total: 2, degraded: 1, memoryTotal: 123, rps: 12.5 });
  });

  it("carries a swarm server's placement and leaves the others' empty", () => {
    const message = create(WatchResponseSchema, {
      full: true,
      servers: [
        { id: 1, runtime: "swarm", nodeAddress: "10.231.0.3:32772", placement: "10.231.0.3:32772 on node vm (e0xeujt6rxgn)" },
        { id: 2, runtime: "docker", nodeAddress: "127.0.0.1:32773" },
      ],
    });
    const [swarm, docker] = toWatchUpdate(message).servers;
    expect(swarm.placement).toBe("10.231.0.3:32772 on node vm (e0xeujt6rxgn)");
    expect(swarm.address).toBe("10.231.0.3:32772");
    expect(docker.placement).toBe("");
  });
});
