// The farm's verbs as the UI uses them: each returns a short sentence for a toast.
import { ServerActionKind } from "../gen/farm/v1/farm_pb";
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

export async function serverAction(ids: number[], action: ActionName): Promise<ActionSummary> {
  const response = await farmClient.serverAction({ serverIds: ids, action: KINDS[action] });
  const failed = response.outcomes.filter((o) => !o.ok).map((o) => ({ id: o.serverId, message: o.message }));
  return { ok: response.outcomes.length - failed.length, failed };
}

export function describeAction(action: ActionName, ids: number[], s: ActionSummary): string {
  const what = ids.length === 1 ? `server-${ids[0]}` : `${ids.length} servers`;
  if (s.failed.length === 0) return `${capital(action)}: ${what} done`;
  const first = s.failed[0];
  return `${capital(action)} on ${what}: ${s.failed.length} failed (server-${first.id}: ${first.message})`;
}

export function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
