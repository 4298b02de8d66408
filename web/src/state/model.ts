// The dashboard's own types: plain numbers and strings, converted from the generated
// protobuf messages at the edge (uint64 fields arrive as bigint), so that the state logic,
// the components and the tests never touch generated code.
import { NodeState, type MetricsSample } from "../gen/farm/v1/agent_pb";
import { ServerStatus, type FarmMetrics, type Server, type WatchResponse } from "../gen/farm/v1/farm_pb";
import { describeFaults, type ActiveFault } from "./faults";

export const STATUSES = ["healthy", "degraded", "starting", "unreachable", "stopped"] as const;
export type Status = (typeof STATUSES)[number] | "unknown";

/** One server as the dashboard shows it. A new object whenever anything in it changes. */
export interface ServerView {
  id: number;
  name: string;
  status: Status;
  reason: string;
  address: string;
  /**
   * Where the server runs when its runtime spreads servers over machines (swarm): the address
   * its node port is published on and the machine, e.g. `10.231.0.3:32772 on node vm (e0xeujt6rxgn)`.
   * Empty for local processes and docker containers.
   */
  placement: string;
  runtime: string;
  agentVersion: string;
  connected: boolean;
  lastSeenMs: number;
  /** Timestamp of the latest sample, 0 before any. */
  sampleMs: number;
  nodeState: string;
  cpu: number;
  cpuLimitCores: number;
  memory: number;
  /** Resident memory (RSS) of node plus agent: counts the shared binary in full; 0 in a container. */
  memoryResident: number;
  memoryLimit: number;
  rps: number;
  eps: number;
  p50: number;
  p99: number;
  inFlight: number;
  uptime: number;
  restarts: number;
  simulating: boolean;
  requestsTotal: number;
  /** What the server does wrong on command, in the proto's order of kinds; empty when nothing. */
  faults: readonly ActiveFault[];
}

/** The farm's aggregate, as FarmMetrics carries it. */
export interface FarmTotals {
  timestampMs: number;
  total: number;
  healthy: number;
  degraded: number;
  stopped: number;
  starting: number;
  unreachable: number;
  cpuTotal: number;
  cpuMean: number;
  memoryTotal: number;
  requestsTotal: number;
  errorsTotal: number;
  rps: number;
  eps: number;
  p99Max: number;
  p50Mean: number;
  inFlight: number;
}

/** One Watch message, converted. */
export interface WatchUpdate {
  full: boolean;
  servers: ServerView[];
  removed: number[];
  totals: FarmTotals | null;
  version: number;
}

const STATUS_NAMES: Record<number, Status> = {
  [ServerStatus.HEALTHY]: "healthy",
  [ServerStatus.DEGRADED]: "degraded",
  [ServerStatus.STOPPED]: "stopped",
  [ServerStatus.STARTING]: "starting",
  [ServerStatus.UNREACHABLE]: "unreachable",
};

export function statusName(status: ServerStatus): Status {
  return STATUS_NAMES[status] ?? "unknown";
}

const NODE_STATES: Record<number, string> = {
  [NodeState.STARTING]: "starting",
  [NodeState.RUNNING]: "running",
  [NodeState.STOPPED]: "stopped",
  [NodeState.CRASHED]: "crashed",
  [NodeState.UNHEALTHY]: "unhealthy",
  [NodeState.PAUSED]: "paused",
};

export function nodeStateName(state: NodeState): string {
  return NODE_STATES[state] ?? "unknown";
}

const num = (v: bigint | number | undefined): number => (v === undefined ? 0 : Number(v));

export function toServerView(s: Server): ServerView {
  const m: MetricsSample | undefined = s.metrics;
  return {
    id: s.id,
    name: s.name || `server-${s.id}`,
    status: statusName(s.status),
    reason: s.statusReason,
    address: s.nodeAddress,
    placement: s.placement,
    runtime: s.runtime,
    agentVersion: s.agentVersion,
    connected: s.connected,
    lastSeenMs: num(s.lastSeenMs),
    sampleMs: num(m?.timestampMs),
    nodeState: m ? nodeStateName(m.nodeState) : "unknown",
    cpu: m?.cpuPercent ?? 0,
    cpuLimitCores: m?.cpuLimitCores ?? 0,
    memory: num(m?.memoryBytes),
    memoryResident: num(m?.memoryResidentBytes),
    memoryLimit: num(m?.memoryLimitBytes),
    rps: s.requestsPerSecond,
    eps: s.errorsPerSecond,
    p50: m?.latencyP50Ms ?? 0,
    p99: m?.latencyP99Ms ?? 0,
    inFlight: m?.inFlight ?? 0,
    uptime: m?.nodeUptimeSeconds ?? 0,
    restarts: m?.nodeRestarts ?? 0,
    simulating: m?.simulatingLoad ?? false,
    requestsTotal: num(m?.requestsTotal),
    faults: describeFaults(s.faults),
  };
}

export function toFarmTotals(m: FarmMetrics): FarmTotals {
  return {
    timestampMs: num(m.timestampMs),
    total: m.serversTotal,
    healthy: m.healthy,
    degraded: m.degraded,
    stopped: m.stopped,
    starting: m.starting,
    unreachable: m.unreachable,
    cpuTotal: m.cpuPercentTotal,
    cpuMean: m.cpuPercentMean,
    memoryTotal: num(m.memoryBytesTotal),
    requestsTotal: num(m.requestsTotal),
    errorsTotal: num(m.errorsTotal),
    rps: m.requestsPerSecond,
    eps: m.errorsPerSecond,
    p99Max: m.latencyP99MsMax,
    p50Mean: m.latencyP50MsMean,
    inFlight: m.inFlight,
  };
}

export function toWatchUpdate(w: WatchResponse): WatchUpdate {
  return {
    full: w.full,
    servers: w.servers.map(toServerView),
    removed: [...w.removedServerIds],
    totals: w.metrics ? toFarmTotals(w.metrics) : null,
    version: num(w.version),
  };
}
