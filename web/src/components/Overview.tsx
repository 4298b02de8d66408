// The farm at a glance: servers by status, the headline numbers, and charts of the last
// minutes (kept across reloads by the store's FarmHistory), with the scenario runs' phases
// and faults drawn as bands over them.
import { useMemo } from "react";
import { Chart } from "./Chart";
import { useScenarioBands } from "../api/scenarios";
import { useSnapshot, useStore } from "./context";
import { bytes, count, ms, pct, rate } from "./format";
import { STATUSES, type Status } from "../state/model";
import { countByStatus } from "../state/query";

interface Props {
  statuses: ReadonlySet<Status>;
  toggleStatus: (s: Status) => void;
}

export function Overview({ statuses, toggleStatus }: Props) {
  const { farm, historyRevision } = useSnapshot();
  const store = useStore();
  const bands = useScenarioBands(null);
  const counts = useMemo(() => countByStatus(farm.ordered), [farm.ordered]);
  const t = farm.totals;
  const errorRate = t && t.rps > 0 ? (t.eps / t.rps) * 100 : 0;
  const cols = useMemo(() => {
    const pts = store.history.points;
    return {
      t: pts.map((p) => p.t),
      rps: pts.map((p) => p.rps),
      eps: pts.map((p) => p.eps),
      err: pts.map((p) => (p.rps > 0 ? (p.eps / p.rps) * 100 : 0)),
      cpu: pts.map((p) => p.cpu),
      mem: pts.map((p) => p.memory),
      healthy: pts.map((p) => p.healthy),
      trouble: pts.map((p) => p.degraded + p.down),
    };
  }, [historyRevision, store]);
  const spanS = cols.t.length > 1 ? (cols.t[cols.t.length - 1] - cols.t[0]) / 1000 : 0;
  const windowLabel = spanS <= 0 ? undefined : spanS < 90 ? `${Math.round(spanS)} s ago` : `${Math.round(spanS / 60)} min ago`;
  return (
    <section className="overview" aria-label="Farm at a glance">
      <div className="status-strip" role="group" aria-label="Servers by status (click to filter)">
        <div className="stat-total">
          <span className="stat-label">Servers</span>
          <span className="stat-big" data-testid="servers-total">
            {farm.ordered.length}
          </span>
        </div>
        {STATUSES.map((s) => (
          <button
            key={s}
            type="button"
            className={`status-tile st-${s}`}
            aria-pressed={statuses.has(s)}
            onClick={() => toggleStatus(s)}
            aria-label={`${counts[s]} ${s}; ${statuses.has(s) ? "showing only these, click to show all" : "click to filter"}`}
            data-testid={`count-${s}`}
          >
            <span className="status-dot" aria-hidden="true" />
            <span className="tile-count">{counts[s]}</span>
            <span className="tile-label">{s}</span>
          </button>
        ))}
      </div>
      <div className="kpis">
        <Kpi label="Requests / s" value={t ? rate(t.rps) : "–"} sub={t ? `${count(t.requestsTotal)} total` : ""} />
        <Kpi
          label="Error rate"
          value={t ? pct(errorRate, 2) : "–"}
          sub={t ? `${rate(t.eps)}/s · ${count(t.errorsTotal)} total` : ""}
          tone={errorRate >= 5 ? "bad" : errorRate >= 1 ? "warn" : undefined}
        />
        <Kpi label="CPU (mean)" value={t ? pct(t.cpuMean) : "–"} sub={t ? `${pct(t.cpuTotal, 0)} of a core in total` : ""} />
        <Kpi label="Memory (proportional)" value={t ? bytes(t.memoryTotal) : "–"} sub={t && farm.ordered.length ? `${bytes(t.memoryTotal / farm.ordered.length)} per server` : ""} />
        <Kpi label="Latency" value={t ? ms(t.p99Max) : "–"} sub={t ? `worst p99 · p50 ${ms(t.p50Mean)}` : ""} />
        <Kpi label="In flight" value={t ? count(t.inFlight) : "–"} sub="requests now" />
      </div>
      <div className="charts">
        <Chart
          title="Requests / s"
          times={cols.t}
          windowLabel={windowLabel}
          bands={bands}
          testid="farm-chart-rps"
          series={[
            { label: "requests/s", values: cols.rps, color: "var(--accent)", format: rate, area: true },
            { label: "errors/s", values: cols.eps, color: "var(--bad)", format: rate },
          ]}
        />
        <Chart
          title="CPU per server (mean)"
          times={cols.t}
          windowLabel={windowLabel}
          bands={bands}
          testid="farm-chart-cpu"
          series={[{ label: "CPU", values: cols.cpu, color: "var(--violet)", format: (v) => pct(v), area: true }]}
        />
        <Chart
          title="Memory (farm)"
          times={cols.t}
          windowLabel={windowLabel}
          bands={bands}
          testid="farm-chart-memory"
          series={[{ label: "memory", values: cols.mem, color: "var(--teal)", format: bytes, area: true }]}
        />
        <Chart
          title="Healthy servers"
          times={cols.t}
          windowLabel={windowLabel}
          bands={bands}
          testid="farm-chart-healthy"
          headline={`${counts.healthy} / ${farm.ordered.length}`}
          series={[
            { label: "healthy", values: cols.healthy, color: "var(--ok)", format: count, area: true },
            { label: "not healthy", values: cols.trouble, color: "var(--warn)", format: count },
          ]}
        />
      </div>
    </section>
  );
}

function Kpi({ label, value, sub, tone }: { label: string; value: string; sub?: string; tone?: "warn" | "bad" }) {
  return (
    <div className={`kpi${tone ? ` kpi-${tone}` : ""}`}>
      <div className="kpi-label">{label}</div>
      <div className="kpi-value">{value}</div>
      {sub && <div className="kpi-sub">{sub}</div>}
    </div>
  );
}
