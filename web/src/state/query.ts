// Filtering and sorting the server grid.
import { STATUSES, type ServerView, type Status } from "./model";

export const SORT_KEYS = ["id", "name", "status", "cpu", "memory", "rps"] as const;
export type SortKey = (typeof SORT_KEYS)[number];

export interface GridQuery {
  /**
   * Words that must all match (name, id, address, status, reason, the faults' texts, and
   * "faults" for any fault); case-insensitive.
   */
  text: string;
  /** Statuses to show; empty means all. */
  statuses: ReadonlySet<Status>;
  sort: SortKey;
  desc: boolean;
}

export const DEFAULT_QUERY: GridQuery = { text: "", statuses: new Set(), sort: "id", desc: false };

/** Worst first: what needs attention sorts to the top. */
const SEVERITY: Record<Status, number> = {
  unreachable: 0,
  degraded: 1,
  stopped: 2,
  starting: 3,
  unknown: 4,
  healthy: 5,
};

export function matchesText(s: ServerView, words: readonly string[]): boolean {
  if (words.length === 0) return true;
  const faults = s.faults.length ? ` faults ${s.faults.map((f) => f.text).join(" ")}` : "";
  const haystack = `${s.name} ${s.address} ${s.status} ${s.reason} ${s.runtime}${faults}`.toLowerCase();
  return words.every((w) => haystack.includes(w) || String(s.id) === w || `#${s.id}` === w);
}

function compare(a: ServerView, b: ServerView, key: SortKey): number {
  switch (key) {
    case "id":
      return a.id - b.id;
    case "name":
      return a.name.localeCompare(b.name, undefined, { numeric: true });
    case "status":
      return SEVERITY[a.status] - SEVERITY[b.status];
    case "cpu":
      return a.cpu - b.cpu;
    case "memory":
      return a.memory - b.memory;
    case "rps":
      return a.rps - b.rps;
  }
}

/** The servers the grid shows, in the order it shows them. Ties fall back to id. */
export function applyQuery(servers: readonly ServerView[], q: GridQuery): ServerView[] {
  const words = q.text.toLowerCase().split(/\s+/).filter(Boolean);
  const out = servers.filter((s) => (q.statuses.size === 0 || q.statuses.has(s.status)) && matchesText(s, words));
  const sign = q.desc ? -1 : 1;
  out.sort((a, b) => sign * compare(a, b, q.sort) || a.id - b.id);
  return out;
}

/** How many servers are in each status (all five always present). */
export function countByStatus(servers: Iterable<ServerView>): Record<Status, number> {
  const counts = { healthy: 0, degraded: 0, starting: 0, unreachable: 0, stopped: 0, unknown: 0 } as Record<Status, number>;
  for (const s of servers) counts[s.status]++;
  return counts;
}

export { STATUSES };
