// One server: live numbers from the Watch stream, its history (GetServer, refreshed while
// open, with the live samples appended in between; before its samples, the controller's
// history of it, fetched once on open and on each reconnect, which reaches back past a
// restart of the controller) with the scenario runs' phases and the faults they set on this
// server as bands, its events, its actions, its faults, and a form to simulate load on it.
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { Chart } from "./Chart";
import { useNow, useSnapshot, useToast } from "./context";
import { ago, bytes, duration, ms, pct, rate } from "./format";
import { ActionButtons } from "./ActionButtons";
import { FaultPanel } from "./Faults";
import { IconClose } from "./icons";
import { errorText, farmClient } from "../api/client";
import { faultLabel } from "../api/faults";
import { metricHistory } from "../api/history";
import { historyTime, mergePoints, type MetricHistory } from "../state/history";
import { useScenarioBands } from "../api/scenarios";
import { AgentEventKind, type AgentEvent, type MetricsSample } from "../gen/farm/v1/agent_pb";

interface Point {
  t: number;
  cpu: number;
  memory: number;
  rps: number;
  p50: number;
  p99: number;
  requests: number;
}

const MAX_POINTS = 180;
const REFRESH_MS = 5000;
/** A sample this close to another of a fresher source is the same moment. */
const SLACK_MS = 1000;

function toPoints(samples: MetricsSample[]): Point[] {
  const out: Point[] = [];
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    const t = Number(s.timestampMs);
    const requests = Number(s.requestsTotal);
    const prev = out[out.length - 1];
    const dt = prev ? (t - prev.t) / 1000 : 0;
    const rps = prev && dt > 0 && requests >= prev.requests ? (requests - prev.requests) / dt : 0;
    out.push({ t, cpu: s.cpuPercent, memory: Number(s.memoryBytes), rps, p50: s.latencyP50Ms, p99: s.latencyP99Ms, requests });
  }
  return out;
}

/** The controller's history of a server as chart points: it keeps no latency. */
function historyPoints(h: MetricHistory): Point[] {
  return h.points.map((p) => ({ t: historyTime(p, h.resolutionMs), cpu: p.cpu, memory: p.memory, rps: p.rps, p50: NaN, p99: NaN, requests: NaN }));
}

const EVENT_TEXT: Record<number, string> = {
  [AgentEventKind.NODE_EXITED]: "Node exited",
  [AgentEventKind.NODE_RESTARTED]: "Node restarted",
  [AgentEventKind.NODE_UNHEALTHY]: "Node unhealthy",
  [AgentEventKind.NODE_HEALTHY]: "Node healthy again",
  [AgentEventKind.NODE_STOPPED]: "Node stopped",
  [AgentEventKind.NODE_STARTED]: "Node started",
};
const EVENT_TONE: Record<number, string> = {
  [AgentEventKind.NODE_EXITED]: "bad",
  [AgentEventKind.NODE_UNHEALTHY]: "warn",
  [AgentEventKind.NODE_STOPPED]: "muted",
};

export function ServerDetail({ id, close }: { id: number; close: () => void }) {
  const { farm, connection } = useSnapshot();
  const liveSince = connection.state === "live" ? connection.since : 0;
  const server = farm.servers.get(id);
  const now = useNow(1000);
  const [points, setPoints] = useState<Point[]>([]);
  const [events, setEvents] = useState<AgentEvent[]>([]);
  const [loadError, setLoadError] = useState<string | null>(null);
  const panel = useRef<HTMLDivElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const bands = useScenarioBands(id);

  // Focus moves into the dialog, Escape closes it, focus goes back where it was.
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    heading.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") close();
    };
    document.addEventListener("keydown", onKey);
    document.body.classList.add("has-drawer");
    return () => {
      document.removeEventListener("keydown", onKey);
      document.body.classList.remove("has-drawer");
      before?.focus?.();
    };
  }, [close]);

  useEffect(() => {
    let stopped = false;
    const load = async () => {
      try {
        const r = await farmClient.getServer({ serverId: id });
        if (stopped) return;
        setPoints((shown) => mergePoints(shown, toPoints(r.history), SLACK_MS).slice(-MAX_POINTS));
        setEvents(r.events.slice().reverse());
        setLoadError(null);
      } catch (e) {
        if (!stopped) setLoadError(errorText(e));
      }
    };
    void load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [id]);

  // The controller's history over the charts' span, once per open and per reconnect.
  useEffect(() => {
    if (!liveSince) return;
    const call = new AbortController();
    metricHistory(id, Date.now() - MAX_POINTS * 1000, call.signal)
      .then((h) => {
        if (!h || call.signal.aborted) return;
        const older = historyPoints(h);
        setPoints((shown) => mergePoints(older, shown, Math.max(SLACK_MS, h.resolutionMs)).slice(-MAX_POINTS));
      })
      .catch(() => {
        // The charts keep the server's own samples.
      });
    return () => call.abort();
  }, [id, liveSince]);

  // Live samples from the Watch stream, between two refreshes.
  useEffect(() => {
    if (!server || !server.sampleMs) return;
    setPoints((pts) => {
      const last = pts[pts.length - 1];
      if (last && last.t >= server.sampleMs) return pts;
      const point: Point = {
        t: server.sampleMs,
        cpu: server.cpu,
        memory: server.memory,
        rps: server.rps,
        p50: server.p50,
        p99: server.p99,
        requests: server.requestsTotal,
      };
      return [...pts, point].slice(-MAX_POINTS);
    });
  }, [server]);

  const cols = useMemo(
    () => ({
      t: points.map((p) => p.t),
      cpu: points.map((p) => p.cpu),
      mem: points.map((p) => p.memory),
      rps: points.map((p) => p.rps),
      p50: points.map((p) => p.p50),
      p99: points.map((p) => p.p99),
    }),
    [points],
  );

  const labelId = `detail-${id}-title`;
  return (
    <div className="drawer-backdrop" onMouseDown={(e) => e.target === e.currentTarget && close()}>
      <div className="drawer" role="dialog" aria-modal="true" aria-labelledby={labelId} ref={panel} data-testid="server-detail">
        <div className="drawer-head">
          <div>
            <h2 id={labelId} tabIndex={-1} ref={heading}>
              {server?.name ?? `server-${id}`}
            </h2>
            {server ? (
              <div className={`detail-status st-${server.status}`}>
                <span className="badge" data-testid="detail-status">
                  <span className="status-dot" aria-hidden="true" />
                  {server.status}
                </span>
                <span className="muted">{server.reason}</span>
              </div>
            ) : (
              <div className="muted">This server is not part of the farm (any more).</div>
            )}
          </div>
          <button type="button" className="icon-btn" onClick={close} aria-label="Close details">
            <IconClose />
          </button>
        </div>

        {server && (
          <>
            <div className="actions" role="group" aria-label={`Actions on ${server.name}`}>
              <ActionButtons ids={[id]} subject={server.name} coloured capitalised />
            </div>

            <dl className="facts">
              <Fact k="CPU" v={pct(server.cpu)} testid="detail-cpu" />
              <Fact k="Memory (proportional)" v={bytes(server.memory)} />
              {server.memoryResident > 0 && <Fact k="Resident" v={bytes(server.memoryResident)} />}
              <Fact k="Requests/s" v={rate(server.rps)} />
              <Fact k="Errors/s" v={rate(server.eps)} />
              <Fact k="p50 / p99" v={`${ms(server.p50)} / ${ms(server.p99)}`} />
              <Fact k="In flight" v={String(server.inFlight)} />
              <Fact k="Node" v={server.nodeState} />
              <Fact k="Uptime" v={duration(server.uptime)} />
              <Fact k="Restarts" v={String(server.restarts)} />
              <Fact k="Address" v={server.address || "–"} />
              {server.placement && <Fact k="Placement" v={server.placement} testid="detail-placement" />}
              <Fact k="Runtime" v={server.runtime || "by hand"} />
              <Fact k="Last sample" v={ago(server.sampleMs, now)} />
            </dl>

            <FaultPanel ids={[id]} subject={server.name} chips={server.faults.map((f) => ({ kind: f.kind, label: faultLabel(f, now) }))} />
          </>
        )}

        {loadError && <p className="error-text">Could not load the history: {loadError}</p>}
        <div className="detail-charts">
          <Chart title="CPU" times={cols.t} height={90} bands={bands} testid="server-chart-cpu" series={[{ label: "CPU", values: cols.cpu, color: "var(--violet)", format: (v) => pct(v), area: true }]} />
          <Chart title="Memory" times={cols.t} height={90} bands={bands} testid="server-chart-memory" series={[{ label: "memory", values: cols.mem, color: "var(--teal)", format: bytes, area: true }]} />
          <Chart title="Requests / s" times={cols.t} height={90} bands={bands} testid="server-chart-rps" series={[{ label: "requests/s", values: cols.rps, color: "var(--accent)", format: rate, area: true }]} />
          <Chart
            title="Latency"
            times={cols.t}
            height={90}
            bands={bands}
            testid="server-chart-latency"
            series={[
              { label: "p99", values: cols.p99, color: "var(--warn)", format: ms },
              { label: "p50", values: cols.p50, color: "var(--accent)", format: ms },
            ]}
          />
        </div>

        {server && <SimulateLoadForm id={id} name={server.name} cores={server.cpuLimitCores} />}

        <section className="events" aria-label="Recent events">
          <h3>Recent events</h3>
          {events.length === 0 ? (
            <p className="muted">No events yet.</p>
          ) : (
            <ol>
              {events.map((e, i) => (
                <li key={i} className={`event ev-${EVENT_TONE[e.kind] ?? "ok"}`}>
                  <span className="event-dot" aria-hidden="true" />
                  <span className="event-kind">{EVENT_TEXT[e.kind] ?? "Event"}</span>
                  <span className="event-msg">{e.message}</span>
                  <time className="event-time" dateTime={new Date(Number(e.timestampMs)).toISOString()}>
                    {ago(Number(e.timestampMs), now)}
                  </time>
                </li>
              ))}
            </ol>
          )}
        </section>
      </div>
    </div>
  );
}

function Fact({ k, v, testid }: { k: string; v: string; testid?: string }) {
  return (
    <div className="fact">
      <dt>{k}</dt>
      <dd data-testid={testid}>{v}</dd>
    </div>
  );
}

function SimulateLoadForm({ id, name, cores }: { id: number; name: string; cores: number }) {
  const toast = useToast();
  const maxCpu = Math.max(100, Math.round((cores || 1) * 100));
  const [cpu, setCpu] = useState(80);
  const [memory, setMemory] = useState(64);
  const [seconds, setSeconds] = useState(30);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      const r = await farmClient.simulateLoad({ serverIds: [id], load: { cpuPercent: cpu, memoryMb: memory, durationSeconds: seconds } });
      const bad = r.outcomes.find((o) => !o.ok);
      toast(bad ? "error" : "ok", bad ? `Simulate load on ${name}: ${bad.message}` : `${name} burns ${cpu}% CPU and holds ${memory} MiB for ${seconds} s`);
    } catch (err) {
      toast("error", `Simulate load failed: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="sim-form" onSubmit={submit} aria-label={`Simulate load on ${name}`}>
      <h3>Simulate load</h3>
      <div className="form-grid">
        <label>
          CPU %
          <input type="number" name="cpu" min={0} max={maxCpu} step={5} value={cpu} onChange={(e) => setCpu(Number(e.target.value))} required />
        </label>
        <label>
          Memory MiB
          <input type="number" name="memory" min={0} max={1024} step={16} value={memory} onChange={(e) => setMemory(Number(e.target.value))} required />
        </label>
        <label>
          Seconds
          <input type="number" name="seconds" min={1} max={300} value={seconds} onChange={(e) => setSeconds(Number(e.target.value))} required />
        </label>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Applying…" : "Apply load"}
        </button>
      </div>
    </form>
  );
}
