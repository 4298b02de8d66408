// The farm's history, kept by the controller across its restarts: metrics over a span (to
// fill the charts when the page opens or reconnects), the runs page by page (the newest page
// polled while shown, older ones on demand), one run whole, and the newest events (polled
// while shown). A controller without a history (an older one: "unimplemented"; one started
// with --no-history: "failed precondition") leaves the charts the page's own points, and the
// views say so and poll once a minute.
import { Code, ConnectError } from "@connectrpc/connect";
import { useCallback, useEffect, useRef, useState } from "react";
import { errorText, farmClient } from "./client";
import type { FarmEvent, GetRunResponse, RunSummary } from "../gen/farm/v1/farm_pb";
import type { MetricHistory } from "../state/history";
import { appendRuns, mergeRuns } from "../state/runs";

/** Whether a failure says that the controller keeps no history at all. */
export function keepsNoHistory(e: unknown): boolean {
  return e instanceof ConnectError && (e.code === Code.Unimplemented || e.code === Code.FailedPrecondition);
}

/** A server's (`serverId`) or the farm's (0) metrics from `fromMs` to now; null where the controller keeps no history. */
export async function metricHistory(serverId: number, fromMs: number, signal?: AbortSignal): Promise<MetricHistory | null> {
  try {
    const r = await farmClient.getMetricHistory({ serverId, fromMs: BigInt(Math.max(0, Math.floor(fromMs))) }, { signal });
    return {
      resolutionMs: Math.max(1, r.resolutionSeconds || 1) * 1000,
      points: r.points.map((p) => ({
        atMs: Number(p.atMs),
        cpu: p.cpuPercent,
        memory: Number(p.memoryBytes),
        rps: p.requestsPerSecond,
        eps: p.errorsPerSecond,
        healthy: p.healthy,
      })),
    };
  } catch (e) {
    if (keepsNoHistory(e)) return null;
    throw e;
  }
}

const PAGE_SIZE = 20;
const RUNS_EVERY_MS = 5000;
const EVENTS_EVERY_MS = 3000;
const UNSUPPORTED_EVERY_MS = 60_000;

export interface RunsView {
  /** Newest first: the newest page as last polled, then the older pages loaded. */
  runs: readonly RunSummary[];
  /** Runs in the history. */
  total: number;
  /** Whether an older page remains. */
  more: boolean;
  loadingOlder: boolean;
  error: string | null;
  unsupported: boolean;
  loaded: boolean;
  older: () => void;
}

/** The history's runs: the newest page now and every 5 s while shown, older pages on demand. */
export function useRuns(): RunsView {
  const [runs, setRuns] = useState<RunSummary[]>([]);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [unsupported, setUnsupported] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const [loadingOlder, setLoadingOlder] = useState(false);
  // The token of the page after the oldest one loaded, and how many older pages are loaded
  // (while none is, each poll of the newest page brings the token).
  const [token, setToken] = useState("");
  const olderPages = useRef(0);

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      let next = RUNS_EVERY_MS;
      try {
        const r = await farmClient.listRuns({ pageSize: PAGE_SIZE });
        if (stopped) return;
        setRuns((loaded) => mergeRuns(loaded, r.runs));
        setTotal(Number(r.total));
        if (olderPages.current === 0 || r.runs.length === 0) {
          olderPages.current = 0;
          setToken(r.nextPageToken);
        }
        setError(null);
        setUnsupported(false);
      } catch (e) {
        if (stopped) return;
        setError(errorText(e));
        setUnsupported(keepsNoHistory(e));
        if (keepsNoHistory(e)) next = UNSUPPORTED_EVERY_MS;
      }
      setLoaded(true);
      timer = setTimeout(poll, next);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);

  const older = useCallback(() => {
    if (!token || loadingOlder) return;
    setLoadingOlder(true);
    farmClient
      .listRuns({ pageSize: PAGE_SIZE, pageToken: token })
      .then((r) => {
        olderPages.current++;
        setRuns((loaded) => appendRuns(loaded, r.runs));
        setToken(r.nextPageToken);
        setTotal(Number(r.total));
        setError(null);
      })
      .catch((e) => setError(errorText(e)))
      .finally(() => setLoadingOlder(false));
  }, [token, loadingOlder]);

  return { runs, total, more: token !== "", loadingOlder, error, unsupported, loaded, older };
}

/** One run whole (GetRun): now, and every 2 s while it runs. Key the user by `runId`. */
export function useRun(runId: string | null, running: boolean): { run: GetRunResponse | null; error: string | null } {
  const [run, setRun] = useState<GetRunResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!runId) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const r = await farmClient.getRun({ runId });
        if (stopped) return;
        setRun(r);
        setError(null);
        if (running) timer = setTimeout(load, 2000);
      } catch (e) {
        if (stopped) return;
        setError(errorText(e));
        if (!(keepsNoHistory(e) || (e instanceof ConnectError && e.code === Code.NotFound))) timer = setTimeout(load, 3000);
      }
    };
    void load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [runId, running]);
  return { run, error };
}

export interface EventsView {
  /** Newest first. */
  events: readonly FarmEvent[];
  error: string | null;
  unsupported: boolean;
  loaded: boolean;
}

/** The newest `limit` events, now and every 3 s while shown. */
export function useEvents(limit = 50): EventsView {
  const [view, setView] = useState<EventsView>({ events: [], error: null, unsupported: false, loaded: false });
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let lastSeq = -1n;
    const poll = async () => {
      let next = EVENTS_EVERY_MS;
      try {
        const r = await farmClient.listEvents({ newest: true, limit });
        if (stopped) return;
        // The same newest event: nothing to redraw.
        const newest = r.events.length ? r.events[r.events.length - 1].seq : 0n;
        if (newest !== lastSeq) {
          lastSeq = newest;
          setView({ events: r.events.slice().reverse(), error: null, unsupported: false, loaded: true });
        } else {
          setView((v) => (v.error || !v.loaded ? { ...v, error: null, loaded: true } : v));
        }
      } catch (e) {
        if (stopped) return;
        const unsupported = keepsNoHistory(e);
        if (unsupported) next = UNSUPPORTED_EVERY_MS;
        setView((v) => ({ ...v, error: errorText(e), unsupported, loaded: true }));
      }
      timer = setTimeout(poll, next);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [limit]);
  return view;
}
