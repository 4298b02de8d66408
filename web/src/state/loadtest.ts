// The load-test form's values read into a LoadTestSpec, or what is wrong with them, field by
// field. The bounds of plain numbers are the inputs' (min/max) and the controller's; what is
// read from text (server ids, weights, the drill) is checked here, so that the form can say
// which field is at fault. A run goes to servers or through a front, never both.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { LoadTestSpecSchema } from "../gen/farm/v1/farm_pb";
import { readDrill, parseWeights, type DrillErrors, type DrillForm } from "./front";
import { parseIds } from "./ids";

export type LoadTestSpecInit = MessageInitShape<typeof LoadTestSpecSchema>;

export type Targets = "all" | "selected" | "ids";

export interface FrontForm {
  url: string;
  /** "3=2, 4=1"; empty: equal shares over the farm. */
  weights: string;
  /** null: no failover drill. */
  drill: DrillForm | null;
}

export interface LoadTestForm {
  targets: Targets;
  /** The selected servers, for targets "selected". */
  selected: readonly number[];
  /** "1-5, 8", for targets "ids". */
  idText: string;
  method: string;
  path: string;
  stopBy: "requests" | "duration";
  requests: number;
  seconds: number;
  model: "closed" | "open";
  concurrency: number;
  ratePerSecond: number;
  timeoutMs: number;
  /** null: to the servers; else every request goes to this front. */
  front: FrontForm | null;
}

export type FormErrors = Partial<Record<"targets" | "frontUrl" | "weights", string>> & { drill?: DrillErrors };

export function hasErrors(e: FormErrors): boolean {
  return Object.values(e).some((v) => (typeof v === "string" ? true : v !== undefined && Object.keys(v).length > 0));
}

/**
 * What the form asks for. `farm` is the ids of the servers the dashboard knows (empty while
 * it knows none): weights and the drill must name servers of the farm.
 */
export function buildSpec(form: LoadTestForm, farm: ReadonlySet<number> = new Set()): { spec: LoadTestSpecInit } | { errors: FormErrors } {
  const errors: FormErrors = {};
  const spec: LoadTestSpecInit = {
    serverIds: [],
    path: form.path,
    method: form.method,
    concurrency: form.concurrency,
    totalRequests: form.stopBy === "requests" ? BigInt(form.requests) : 0n,
    durationSeconds: form.stopBy === "duration" ? form.seconds : 0,
    timeoutMs: form.timeoutMs,
    ratePerSecond: form.model === "open" ? form.ratePerSecond : 0,
  };
  if (form.front) {
    const url = form.front.url.trim();
    if (url === "") errors.frontUrl = "The front's URL, like http://127.0.0.1:8080";
    const weights = parseWeights(form.front.weights, farm);
    if (weights.error) errors.weights = weights.error;
    spec.frontUrl = url;
    spec.weights = weights.weights;
    if (form.front.drill) {
      const drill = readDrill(form.front.drill, form.stopBy === "duration" ? form.seconds : null, farm);
      if ("errors" in drill) errors.drill = drill.errors;
      else spec.failover = drill.drill;
    }
  } else {
    if (form.targets === "selected") spec.serverIds = [...form.selected].sort((a, b) => a - b);
    if (form.targets === "ids") {
      const parsed = parseIds(form.idText);
      if (parsed.error) errors.targets = `Targets: ${parsed.error}`;
      spec.serverIds = parsed.ids;
    }
    if (!errors.targets && form.targets !== "all" && spec.serverIds!.length === 0) errors.targets = "Choose at least one target server";
  }
  return hasErrors(errors) ? { errors } : { spec };
}
