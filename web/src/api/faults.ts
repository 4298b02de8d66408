// Setting and clearing faults on servers, from the form's values. The bounds of every value
// are the controller's to check: it refuses a bad one with a message naming the field
// (`faults.abort.when.percent must be 0 to 100, got 150`), which the UI shows as it is. Only
// what protobuf cannot carry (a fraction or a negative number in a whole-number field) is
// refused here.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectionFaultMode, FaultKind, FaultProfileSchema, type FaultProfile, type FaultWhenSchema } from "../gen/farm/v1/faults_pb";
import { describeFaults, FAULT_KINDS, faultLabel, type ActiveFault, type FaultKindName } from "../state/faults";
import { summarize, type ActionSummary } from "./actions";
import { farmClient } from "./client";

export { describeFaults, FAULT_KINDS, faultLabel, type ActiveFault, type FaultKindName, type FaultProfile };

const KIND_ENUM: Record<FaultKindName, FaultKind> = {
  latency: FaultKind.LATENCY,
  abort: FaultKind.ABORT,
  hang: FaultKind.HANG,
  throughput: FaultKind.THROUGHPUT,
  connection: FaultKind.CONNECTION,
  rate_limit: FaultKind.RATE_LIMIT,
  health: FaultKind.HEALTH,
  readiness: FaultKind.READINESS,
  partition: FaultKind.PARTITION,
};

/** The fault form's fields, as typed (numbers as text: an empty field is not a zero). */
export interface FaultFormValues {
  kind: FaultKindName;
  /** latency */
  delayMs: string;
  jitterMs: string;
  /** abort and health: the status answered */
  status: string;
  /** hang */
  maxMs: string;
  /** throughput */
  bytesPerSecond: string;
  /** connection */
  mode: "close" | "reset";
  /** rate_limit */
  requestsPerSecond: string;
  /** Share of the requests hit, in percent; empty: all of them. Not used by a partition. */
  percent: string;
  /** The fault clears itself after this many seconds; empty or 0: until cleared. */
  durationSeconds: string;
}

export const DEFAULT_FAULT_FORM: FaultFormValues = {
  kind: "latency",
  delayMs: "200",
  jitterMs: "50",
  status: "503",
  maxMs: "60000",
  bytesPerSecond: "1000",
  mode: "reset",
  requestsPerSecond: "100",
  percent: "",
  durationSeconds: "",
};

const UINT32_MAX = 4_294_967_295;

class FormError extends Error {}

/** A whole-number field; `fallback` stands for an empty one (else it is required). */
function whole(text: string, label: string, fallback?: number): number {
  const t = text.trim();
  if (t === "") {
    if (fallback === undefined) throw new FormError(`${label} is required`);
    return fallback;
  }
  const n = Number(t);
  if (!Number.isInteger(n) || n < 0) throw new FormError(`${label} must be a whole number, 0 or more (got ${t})`);
  if (n > UINT32_MAX) throw new FormError(`${label} is too large (got ${t})`);
  return n;
}

/** The one fault the form describes, or why it describes none. */
export function faultFromForm(v: FaultFormValues): { profile: FaultProfile } | { error: string } {
  try {
    const durationSeconds = whole(v.durationSeconds, "Duration", 0);
    const when: MessageInitShape<typeof FaultWhenSchema> = { durationSeconds };
    if (v.kind !== "partition" && v.percent.trim() !== "") {
      const percent = Number(v.percent.trim());
      if (!Number.isFinite(percent)) throw new FormError(`Percent must be a number (got ${v.percent.trim()})`);
      when.percent = percent;
    }
    let profile: FaultProfile;
    switch (v.kind) {
      case "latency":
        profile = create(FaultProfileSchema, { latency: { when, delayMs: whole(v.delayMs, "Delay"), jitterMs: whole(v.jitterMs, "Jitter", 0) } });
        break;
      case "abort":
        profile = create(FaultProfileSchema, { abort: { when, statuses: [{ status: whole(v.status, "Status"), weight: 1 }] } });
        break;
      case "hang":
        profile = create(FaultProfileSchema, { hang: { when, maxMs: whole(v.maxMs, "Hold at most", 0) } });
        break;
      case "throughput":
        profile = create(FaultProfileSchema, { throughput: { when, bytesPerSecond: whole(v.bytesPerSecond, "Bytes/s") } });
        break;
      case "connection":
        profile = create(FaultProfileSchema, {
          connection: { when, mode: v.mode === "close" ? ConnectionFaultMode.CLOSE : ConnectionFaultMode.RESET },
        });
        break;
      case "rate_limit":
        profile = create(FaultProfileSchema, { rateLimit: { when, requestsPerSecond: whole(v.requestsPerSecond, "Requests/s") } });
        break;
      case "health":
        profile = create(FaultProfileSchema, { health: { when, status: whole(v.status, "Status", 0) } });
        break;
      case "readiness":
        profile = create(FaultProfileSchema, { readiness: { when } });
        break;
      case "partition":
        profile = create(FaultProfileSchema, { partition: { when } });
        break;
    }
    return { profile };
  } catch (e) {
    if (e instanceof FormError) return { error: e.message };
    throw e;
  }
}

/** Sets `faults` on the servers `ids`: each kind given replaces that kind, the others stay. */
export async function setFaults(ids: number[], faults: FaultProfile): Promise<ActionSummary> {
  const response = await farmClient.setFaults({ targets: { serverIds: ids }, faults });
  return summarize(response.outcomes);
}

/** Clears the `kinds` of fault on the servers `ids`; every kind when none is named. */
export async function clearFaults(ids: number[], kinds: readonly FaultKindName[] = []): Promise<ActionSummary> {
  const response = await farmClient.clearFaults({ targets: { serverIds: ids }, kinds: kinds.map((k) => KIND_ENUM[k]) });
  return summarize(response.outcomes);
}

/** What a fault of `kind` is called in a sentence: "latency fault", "rate limit fault". */
export function faultName(kind: FaultKindName): string {
  return `${kind.replace("_", " ")} fault`;
}
