// A run through a front, live and at its end: how the front spread the requests (the share
// table, the fairness figures), a per-second share chart with the failover drill's moments
// marked on it, and the drill's figures. The shaping is state/front.ts's; this only draws.
import { memo, useId, useMemo, useRef, useState } from "react";
import { count, ms } from "./format";
import { drillFigures, drillMarks, fairnessFigures, shareChart, sharePct, stack, type ChartMode, type DrillMarks, type FrontView, type ShareChart } from "../state/front";

const ACTION_TEXT = { kill: "killed", stop: "stopped", pause: "paused", health: "failing its health check" } as const;

export function FrontResult({ front, done }: { front: FrontView; done: boolean }) {
  const [mode, setMode] = useState<ChartMode>("share");
  const drill = front.failover;
  const chart = useMemo(() => shareChart(front.timeline, { mode, pinned: drill ? [drill.serverId] : [] }), [front.timeline, mode, drill]);
  const marks = useMemo(() => drillMarks(drill, chart.seconds.length), [drill, chart.seconds.length]);
  const fairness = fairnessFigures(front);
  return (
    <section className="front-result" aria-label="Through the front" data-testid="front-result">
      <h3>
        Through <code>{front.url}</code>
      </h3>
      <div className="kpis lt-kpis" role="group" aria-label="Fairness">
        {fairness.map((f) => (
          <div key={f.key} className={`kpi${f.key === "ratio" && front.attributed > 0 && front.maxMinRatio === 0 ? " kpi-warn" : ""}`} title={f.hint}>
            <div className="kpi-label">{f.label}</div>
            <div className="kpi-value" data-testid={`front-${f.key}`}>
              {f.value}
            </div>
          </div>
        ))}
      </div>

      <ShareChartView chart={chart} marks={marks} mode={mode} setMode={setMode} drillLabel={drill ? `server-${drill.serverId} ${drill.action ? ACTION_TEXT[drill.action] : "down"}` : ""} />
      {front.timelineTruncated && <p className="muted">The timeline reached its bound (200,000 server-seconds): later seconds are not drawn.</p>}

      {drill && (
        <div className="drill" role="group" aria-label="Failover drill" data-testid="drill">
          <h3>
            Failover drill <span className="muted">server-{drill.serverId} · {drill.action ?? "?"} at {drill.atMs / 1000} s for {drill.downMs / 1000} s</span>
          </h3>
          {drill.error && <p className="error-text">{drill.error}</p>}
          <dl className="drill-figures">
            {drillFigures(drill, done).map((f) => (
              <div key={f.key} title={f.hint}>
                <dt>{f.label}</dt>
                <dd data-testid={`drill-${f.key}`} className={f.value === "not seen" || f.value === "not yet" ? "muted" : undefined}>
                  {f.value}
                </dd>
              </div>
            ))}
          </dl>
        </div>
      )}

      <div className="table-wrap share-wrap">
        <table className="table share-table" data-testid="share-table">
          <caption>Share per server</caption>
          <thead>
            <tr>
              <th scope="col">Server</th>
              <th scope="col">Requests</th>
              <th scope="col">Failed</th>
              <th scope="col">Share</th>
              <th scope="col">Expected</th>
              <th scope="col">p50</th>
              <th scope="col">p99</th>
            </tr>
          </thead>
          <tbody>
            {front.backends.map((b) => (
              <tr key={b.serverId} data-testid={`share-row-${b.serverId}`}>
                <th scope="row">server-{b.serverId}</th>
                <td>{count(b.requests)}</td>
                <td className={b.failures ? "bad-text" : undefined}>{count(b.failures)}</td>
                <td data-testid={`share-${b.serverId}`}>
                  <span className="share-cell">
                    <span className="share-bar" aria-hidden="true">
                      <span style={{ width: `${Math.min(100, b.share * 100)}%` }} />
                      {b.expectedShare > 0 && <i style={{ left: `${Math.min(100, b.expectedShare * 100)}%` }} />}
                    </span>
                    {sharePct(b.share)}
                  </span>
                </td>
                <td data-testid={`expected-${b.serverId}`}>{sharePct(b.expectedShare)}</td>
                <td>{b.requests ? ms(b.p50Ms) : "–"}</td>
                <td>{b.requests ? ms(b.p99Ms) : "–"}</td>
              </tr>
            ))}
            {front.backends.length === 0 && (
              <tr>
                <td colSpan={7} className="muted">
                  none yet
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

const W = 600;
const H = 160;

function color(key: string, index: number): string {
  if (key === "others") return "var(--idle)";
  if (key === "unattributed") return "var(--bad)";
  return `var(--series-${(index % 10) + 1})`;
}

/** Stacked step areas, one band per series and second, with the drill's moments on top. */
const ShareChartView = memo(function ShareChartView({ chart, marks, mode, setMode, drillLabel }: { chart: ShareChart; marks: DrillMarks; mode: ChartMode; setMode: (m: ChartMode) => void; drillLabel: string }) {
  const id = useId();
  // useId's characters are not all valid in a url(#…) reference.
  const hatch = `hatch-${id.replace(/[^\w-]/g, "")}`;
  const box = useRef<HTMLDivElement>(null);
  const [hover, setHover] = useState<number | null>(null);
  const n = chart.seconds.length;
  const bands = useMemo(() => stack(chart.series), [chart.series]);
  const x = (t: number) => (n > 0 ? (Math.min(Math.max(t, 0), n) / n) * W : 0);
  const y = (v: number) => H - (Math.min(v, chart.max) / chart.max) * H;
  const format = mode === "share" ? (v: number) => `${v.toFixed(1)}%` : (v: number) => count(v);
  const onMove = (e: React.PointerEvent) => {
    const r = box.current?.getBoundingClientRect();
    if (!r || n === 0) return;
    setHover(Math.min(n - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * n))));
  };
  const hi = hover !== null && hover < n ? hover : null;
  const lastValues = chart.series.map((s) => `${s.label} ${format(s.values[n - 1] ?? 0)}`).join(", ");
  const drillText = [marks.down !== null && `${drillLabel} at ${marks.down.toFixed(1)} s`, marks.back !== null && `back at ${marks.back.toFixed(1)} s`].filter(Boolean).join(", ");
  const summary = n ? `${n} s; last second: ${lastValues}${drillText ? `; ${drillText}` : ""}` : "no data yet";
  const title = mode === "share" ? "Share per second" : "Requests per second by server";
  return (
    <figure className="chart share-chart" aria-labelledby={`${id}-t`}>
      <figcaption className="chart-head">
        <span id={`${id}-t`} className="chart-title">
          {title}
        </span>
        {chart.othersCount > 0 && <span className="muted">the {chart.series.filter((s) => s.serverId !== null).length} busiest servers, the rest as others</span>}
        <span className="seg seg-small" role="radiogroup" aria-label="The chart shows">
          <label>
            <input type="radio" name={`${id}-mode`} checked={mode === "share"} onChange={() => setMode("share")} /> Share %
          </label>
          <label>
            <input type="radio" name={`${id}-mode`} checked={mode === "requests"} onChange={() => setMode("requests")} /> Requests/s
          </label>
        </span>
      </figcaption>
      <div className="chart-box" ref={box} style={{ height: H }} onPointerMove={onMove} onPointerLeave={() => setHover(null)} role="img" aria-label={`${title}: ${summary}`} data-testid="share-chart">
        {n === 0 ? (
          <div className="chart-empty">Waiting for the first second…</div>
        ) : (
          <>
            <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" aria-hidden="true">
              {[0.25, 0.5, 0.75].map((f) => (
                <line key={f} x1={0} x2={W} y1={H * f} y2={H * f} className="grid-line" />
              ))}
              <defs>
                <pattern id={hatch} width={8} height={8} patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
                  <line x1={0} y1={0} x2={0} y2={8} className="hatch-line" />
                </pattern>
              </defs>
              {chart.series.map((s, i) => {
                const { lower, upper } = bands[i];
                let d = "";
                for (let k = 0; k < n; k++) d += `${d ? "L" : "M"}${x(k).toFixed(1)},${y(upper[k]).toFixed(1)}L${x(k + 1).toFixed(1)},${y(upper[k]).toFixed(1)}`;
                for (let k = n - 1; k >= 0; k--) d += `L${x(k + 1).toFixed(1)},${y(lower[k]).toFixed(1)}L${x(k).toFixed(1)},${y(lower[k]).toFixed(1)}`;
                return <path key={s.key} d={`${d}Z`} fill={color(s.key, i)} className="share-area" data-series={s.key} />;
              })}
              {/* Over the areas, hatched, so that the servers' shares stay readable beneath. */}
              {marks.band && <rect className="drill-band" x={x(marks.band[0])} y={0} width={Math.max(1, x(marks.band[1]) - x(marks.band[0]))} height={H} fill={`url(#${hatch})`} />}
              {marks.down !== null && <line className="drill-line" x1={x(marks.down)} x2={x(marks.down)} y1={0} y2={H} data-mark="down" />}
              {marks.back !== null && <line className="drill-line drill-back" x1={x(marks.back)} x2={x(marks.back)} y1={0} y2={H} data-mark="back" />}
              {hi !== null && <rect className="share-hover" x={x(hi)} y={0} width={W / n} height={H} />}
            </svg>
            <span className="chart-max">{format(chart.max)}</span>
            {marks.down !== null && (
              <span className="drill-tag" style={{ left: `${(x(marks.down) / W) * 100}%` }}>
                down
              </span>
            )}
            {marks.back !== null && (
              <span className="drill-tag" style={{ left: `${(x(marks.back) / W) * 100}%` }}>
                back
              </span>
            )}
            {hi !== null && (
              <div className="chart-tip" style={{ left: `${((hi + 0.5) / n) * 100}%` }}>
                <div className="tip-time">second {hi}</div>
                {chart.series.map((s, i) => (
                  <div key={s.key}>
                    <i style={{ background: color(s.key, i) }} /> {s.label} <b>{format(s.values[hi])}</b>
                  </div>
                ))}
              </div>
            )}
          </>
        )}
      </div>
      {n > 0 && (
        <div className="chart-foot" aria-hidden="true">
          <span>0 s</span>
          <span>{n} s</span>
        </div>
      )}
      {chart.series.length > 0 && (
        <ul className="legend" aria-label="Series">
          {chart.series.map((s, i) => (
            <li key={s.key}>
              <i style={{ background: color(s.key, i) }} /> {s.label}
            </li>
          ))}
          {marks.band && (
            <li>
              <i className="legend-drill" /> {drillLabel}
            </li>
          )}
        </ul>
      )}
    </figure>
  );
});
