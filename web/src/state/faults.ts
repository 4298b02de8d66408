// A server's fault profile as the dashboard shows it: one short text per active fault, in
// the order of the proto's FaultProfile, converted from the generated message at the edge
// (model.ts) so that the components only handle plain strings and numbers. The remaining
// time is added at render (faultLabel), since it changes while the profile does not.
import { ConnectionFaultMode, type FaultProfile, type FaultWhen } from "../gen/farm/v1/faults_pb";

/** The kinds of fault, named as in the proto and the REST API, in the proto's order. */
export const FAULT_KINDS = ["latency", "abort", "hang", "throughput", "connection", "rate_limit", "health", "readiness", "partition"] as const;
export type FaultKindName = (typeof FAULT_KINDS)[number];

/** One active fault of a server. */
export interface ActiveFault {
  kind: FaultKindName;
  /** What it does, in a few words: "latency 200±50 ms", "abort 503 · 30%". */
  text: string;
  /** When it clears itself (ms since the epoch); 0 when it lasts until cleared. */
  expiresAtMs: number;
}

/** The server's active faults; none for an absent or empty profile. */
export function describeFaults(profile: FaultProfile | undefined): ActiveFault[] {
  if (!profile) return [];
  const out: ActiveFault[] = [];
  const add = (kind: FaultKindName, what: string, when: FaultWhen | undefined, scoped = true) => {
    out.push({ kind, text: scoped ? what + scope(when) : what, expiresAtMs: Number(when?.expiresAtMs ?? 0n) });
  };
  const { latency, abort, hang, throughput, connection, rateLimit, health, readiness, partition } = profile;
  if (latency) {
    const shaped = latency.p50Ms !== 0 || latency.p90Ms !== 0 || latency.p99Ms !== 0;
    const what = shaped
      ? `p50/p90/p99 ${latency.p50Ms}/${latency.p90Ms}/${latency.p99Ms} ms`
      : latency.jitterMs
        ? `${latency.delayMs}±${latency.jitterMs} ms`
        : `${latency.delayMs} ms`;
    add("latency", `latency ${what}`, latency.when);
  }
  if (abort) {
    // One status alone has no use for its weight; an empty mix means 503.
    const mix =
      abort.statuses.length === 0
        ? "503"
        : abort.statuses.length === 1
          ? String(abort.statuses[0].status)
          : abort.statuses.map((s) => `${s.status}:${s.weight}`).join(",");
    add("abort", `abort ${mix}`, abort.when);
  }
  if (hang) add("hang", `hang ≤${millis(hang.maxMs || 60_000)}`, hang.when);
  if (throughput) add("throughput", `throughput ${perSecond(throughput.bytesPerSecond)}`, throughput.when);
  if (connection) add("connection", `connection ${connection.mode === ConnectionFaultMode.CLOSE ? "close" : "reset"}`, connection.when);
  if (rateLimit) {
    const status = rateLimit.status && rateLimit.status !== 429 ? ` → ${rateLimit.status}` : "";
    add("rate_limit", `rate limit ${rateLimit.requestsPerSecond}/s${status}`, rateLimit.when);
  }
  if (health) add("health", `health ${health.status || 503}`, health.when);
  if (readiness) add("readiness", "drained", readiness.when);
  // A partition has a duration and nothing else.
  if (partition) add("partition", "partitioned", partition.when, false);
  return out;
}

/** The share of requests hit and the routes, when not all of them. */
function scope(when: FaultWhen | undefined): string {
  let text = "";
  if (when?.percent !== undefined && when.percent !== 100) text += ` · ${Number(when.percent.toPrecision(4))}%`;
  if (when?.pathPrefix) text += ` · on ${when.pathPrefix}`;
  return text;
}

/** 500 → "500 ms", 60000 → "60 s", 1500 → "1.5 s". */
function millis(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Number((ms / 1000).toPrecision(3))} s`;
}

/** Bytes per second in decimal units: 1000 → "1 kB/s", 65536 → "65.5 kB/s". */
function perSecond(bytes: number): string {
  const units = ["B/s", "kB/s", "MB/s", "GB/s"];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(3))} ${units[i]}`;
}

/** How long until `expiresAtMs`, for a person: "42 s left", "5 min left", "3 h left". */
export function remaining(expiresAtMs: number, now: number): string {
  const s = Math.ceil((expiresAtMs - now) / 1000);
  if (s <= 0) return "ending";
  if (s < 120) return `${s} s left`;
  if (s < 7200) return `${Math.round(s / 60)} min left`;
  return `${Math.round(s / 3600)} h left`;
}

/** The fault's text, with the time it has left when it clears itself. */
export function faultLabel(f: ActiveFault, now: number): string {
  return f.expiresAtMs ? `${f.text} · ${remaining(f.expiresAtMs, now)}` : f.text;
}
