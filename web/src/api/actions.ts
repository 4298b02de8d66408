// The farm's verbs as the UI uses them: each returns a short sentence for a toast.
import { ServerActionKind, type CommandOutcome } from "../gen/farm/v1/farm_pb";
import { farmClient } from "./client";

export type ActionName = "start" | "stop" | "restart" | "kill" | "pause" | "unpause";

const KINDS: Record<ActionName, ServerActionKind> = {
  start: ServerActionKind.START,
  stop: ServerActionKind.STOP,
  restart: ServerActionKind.RESTART,
  kill: ServerActionKind.KILL,
  pause: ServerActionKind.PAUSE,
  unpause: ServerActionKind.UNPAUSE,
};

export interface ActionSummary {
  ok: number;
  failed: { id: number; message: string }[];
}

/** How many servers did it, and which did not, with why. */
export function summarize(outcomes: readonly CommandOutcome[]): ActionSummary {
  const failed = outcomes.filter((o) => !o.ok).map((o) => ({ id: o.serverId, message: o.message }));
  return { ok: outcomes.length - failed.length, failed };
}

export async function serverAction(ids: number[], action: ActionName): Promise<ActionSummary> {
  const response = await farmClient.serverAction({ serverIds: ids, action: KINDS[action] });
  return summarize(response.outcomes);
}

export function describeAction(action: ActionName, ids: number[], s: ActionSummary): string {
  return describeOutcome(capital(action), ids, s);
}

/** "Stop: server-3 done", or "Stop on 2 servers: 1 failed (server-2: why)". */
export function describeOutcome(what: string, ids: number[], s: ActionSummary): string {
  const target = ids.length === 1 ? `server-${ids[0]}` : `${ids.length} servers`;
  if (s.failed.length === 0) return `${what}: ${target} done`;
  const first = s.failed[0];
  return `${what} on ${target}: ${s.failed.length} failed (server-${first.id}: ${first.message})`;
}

export function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
