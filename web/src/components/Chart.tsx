// Hand-rolled SVG charts: a line/area chart with a hover read-out for the overview and the
// server detail, and a tiny sparkline for the cards. The SVG scales with its box
// (preserveAspectRatio="none", strokes that do not scale); labels are HTML so text stays crisp.
// A chart can carry bands under its lines: a scenario's load phases and its faults. Its
// figure says how many points it draws and the first one's time (data-points, data-from).
import { memo, useId, useMemo, useRef, useState } from "react";
import { bandBoxes, bandsAt, bandSummary, type Band, type BandBox } from "../state/scenario";

export interface Series {
  label: string;
  values: readonly number[];
  /** A CSS colour, usually a custom property. */
  color: string;
  format: (v: number) => string;
  area?: boolean;
}

interface ChartProps {
  title: string;
  times: readonly number[];
  series: Series[];
  height?: number;
  /** Fixed top of the scale (e.g. 100 for percentages); otherwise from the data. */
  max?: number;
  /** Shown when there is nothing yet. */
  empty?: string;
  /** Text beside the title (the latest value by default). */
  headline?: string;
  windowLabel?: string;
  /** Phases and faults drawn under the lines, on the same clock as `times`. */
  bands?: readonly Band[];
  /** A fixed time axis; otherwise from the first to the last of `times`. */
  range?: readonly [number, number];
  /** The foot's two ends, in place of the window label and "now". */
  foot?: readonly [string, string];
  /** The hover read-out's time (the clock time by default), e.g. "+3 s" on a run's axis. */
  timeLabel?: (t: number) => string;
  testid?: string;
}

const W = 600;
/** About the width of a character of a band's label (10 px bold), for the room it takes. */
const LABEL_CHAR_PX = 6;

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** The line through the finite values, and the first and last x it reaches (for an area). */
function path(values: readonly number[], t: readonly number[], t0: number, span: number, max: number, h: number): { d: string; x0: number; x1: number } {
  let d = "";
  let x0 = 0;
  let x1 = W;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    const x = span > 0 ? ((t[i] - t0) / span) * W : W;
    const y = h - (Math.min(v, max) / max) * h;
    if (!d) x0 = x;
    x1 = x;
    d += `${d ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
  }
  return { d, x0, x1 };
}

const clockTime = (t: number) => new Date(t).toLocaleTimeString("en-GB", { hour12: false });

export const Chart = memo(function Chart({ title, times, series, height = 120, max, empty = "Waiting for data…", headline, windowLabel, bands, range, foot, timeLabel = clockTime, testid }: ChartProps) {
  const id = useId();
  const box = useRef<HTMLDivElement>(null);
  const [hover, setHover] = useState<number | null>(null);
  const n = times.length;
  const t0 = range ? range[0] : n ? times[0] : 0;
  const span = range ? Math.max(0, range[1] - range[0]) : n > 1 ? times[n - 1] - t0 : 0;
  // The box's width as last laid out (charts re-render with their data): a label's room.
  const width = box.current?.clientWidth || W;
  const boxes = useMemo(
    () => (bands && bands.length && span > 0 ? bandBoxes(bands, t0, t0 + span, (b) => (b.label.length * LABEL_CHAR_PX + 12) / width) : []),
    [bands, t0, span, width],
  );
  const drawn = n >= 2 || (range !== undefined && span > 0);
  const top = useMemo(() => {
    if (max !== undefined) return max;
    let m = 0;
    for (const s of series) for (const v of s.values) if (Number.isFinite(v) && v > m) m = v;
    return niceMax(m * 1.1);
  }, [series, max]);
  const h = height;
  const latest = series[0]?.values[series[0].values.length - 1];
  const onMove = (e: React.PointerEvent) => {
    const r = box.current?.getBoundingClientRect();
    if (!r || n === 0) return;
    const tx = t0 + ((e.clientX - r.left) / r.width) * span;
    let best = 0;
    for (let i = 1; i < n; i++) if (Math.abs(times[i] - tx) < Math.abs(times[best] - tx)) best = i;
    setHover(best);
  };
  const hi = hover !== null && hover < n ? hover : null;
  const bandText = bandSummary(boxes);
  const summary = series.map((s) => `${s.label} ${n ? s.format(s.values[s.values.length - 1]) : "no data"}`).join(", ") + (bandText ? `; ${bandText}` : "");
  const hoverBands = hi !== null && bands ? bandsAt(bands, times[hi], 500) : [];
  return (
    <figure className="chart" aria-labelledby={`${id}-t`} data-testid={testid} data-points={n} data-from={n ? Math.round(times[0]) : undefined}>
      <figcaption className="chart-head">
        <span id={`${id}-t`} className="chart-title">
          {title}
        </span>
        <span className="chart-value">{headline ?? (n && latest !== undefined ? series[0].format(latest) : "–")}</span>
      </figcaption>
      <div
        className="chart-box"
        ref={box}
        style={{ height: h }}
        onPointerMove={onMove}
        onPointerLeave={() => setHover(null)}
        role="img"
        aria-label={`${title}: ${summary}`}
      >
        {!drawn ? (
          <div className="chart-empty">{empty}</div>
        ) : (
          <>
            <svg viewBox={`0 0 ${W} ${h}`} preserveAspectRatio="none" aria-hidden="true">
              {boxes.map((b) => (
                <BandShape key={b.band.key} b={b} h={h} />
              ))}
              {[0.25, 0.5, 0.75].map((f) => (
                <line key={f} x1={0} x2={W} y1={h * f} y2={h * f} className="grid-line" />
              ))}
              {series.map((s, i) => {
                const { d, x0, x1 } = path(s.values, times, t0, span, top, h);
                return (
                  <g key={i}>
                    {s.area && d && <path d={`${d}L${x1.toFixed(1)},${h}L${x0.toFixed(1)},${h}Z`} fill={s.color} className="chart-area" />}
                    <path d={d} stroke={s.color} className="chart-line" />
                  </g>
                );
              })}
              {hi !== null && span > 0 && (
                <line x1={((times[hi] - t0) / span) * W} x2={((times[hi] - t0) / span) * W} y1={0} y2={h} className="cursor-line" />
              )}
            </svg>
            {boxes.length > 0 && (
              <div className="band-labels" aria-hidden="true">
                {boxes.map((b) => (
                  <BandLabel key={b.band.key} b={b} />
                ))}
              </div>
            )}
            {n < 2 && <div className="chart-empty chart-empty-over">{empty}</div>}
            <span className="chart-max">{series[0]?.format(top)}</span>
            {hi !== null && (
              <div className="chart-tip" style={{ left: `${span > 0 ? ((times[hi] - t0) / span) * 100 : 100}%` }}>
                <div className="tip-time">{timeLabel(times[hi])}</div>
                {series.map((s, i) => (
                  <div key={i}>
                    <i style={{ background: s.color }} /> {s.label} <b>{s.format(s.values[hi])}</b>
                  </div>
                ))}
                {hoverBands.map((b) => (
                  <div key={b.key} className={`tip-band tip-${b.kind}`}>
                    {b.kind === "phase" ? "phase" : "fault"} {b.label}
                  </div>
                ))}
              </div>
            )}
          </>
        )}
      </div>
      {foot && drawn ? (
        <div className="chart-foot" aria-hidden="true">
          <span>{foot[0]}</span>
          <span>{foot[1]}</span>
        </div>
      ) : (
        windowLabel &&
        n > 1 && (
          <div className="chart-foot" aria-hidden="true">
            <span>{windowLabel}</span>
            <span>now</span>
          </div>
        )
      )}
    </figure>
  );
});

/**
 * A phase as a shaded stretch with its start marked, a fault as a red stretch (a line for a
 * moment). The data attributes name what is drawn, for the browser tests.
 */
function BandShape({ b, h }: { b: BandBox; h: number }) {
  const x0 = b.x0 * W;
  const x1 = b.x1 * W;
  const common = { "data-band": b.band.kind, "data-label": b.band.label, "data-run": b.band.runId, "data-live": b.band.live ? "true" : undefined };
  if (b.band.kind === "phase") {
    return (
      <g {...common}>
        <rect x={x0} y={0} width={Math.max(0, x1 - x0)} height={h} className={`band-phase band-shade-${b.band.index % 2}`} />
        {!b.cutStart && <line x1={x0} x2={x0} y1={0} y2={h} className="band-edge" />}
      </g>
    );
  }
  if (b.band.instant || x1 - x0 < 1.5) {
    return (
      <g {...common} data-instant={b.band.instant ? "true" : undefined}>
        <line x1={x0} x2={x0} y1={0} y2={h} className="band-moment" />
      </g>
    );
  }
  return (
    <g {...common}>
      <rect x={x0} y={0} width={x1 - x0} height={h} className="band-fault" />
      <line x1={x0} x2={x1} y1={h - 1} y2={h - 1} className="band-fault-edge" />
    </g>
  );
}

/** A band's name over it: phases along the top, faults along the bottom, one row per lane. */
function BandLabel({ b }: { b: BandBox }) {
  const title = b.band.kind === "fault" && b.band.serverIds.length ? `${b.band.label} on server ${b.band.serverIds.join(", ")}` : b.band.label;
  // A phase's name stays within it; a fault's may run past its band (its row is its own for
  // the label's room), up to the chart's edge.
  const place: React.CSSProperties =
    b.band.kind === "phase" ? { left: `${b.x0 * 100}%`, width: `${Math.max(0, b.x1 - b.x0) * 100}%` } : { left: `${b.x0 * 100}%`, maxWidth: `${(1 - b.x0) * 100}%`, bottom: 2 + b.lane * 15 };
  return (
    <span className={`band-label band-label-${b.band.kind}`} style={place} title={title}>
      {b.band.label}
    </span>
  );
}

interface SparkProps {
  values: readonly number[];
  color: string;
  /** Scale: "zero" runs from 0 to the data's top (at least `floor`), "range" from the
   * data's bottom to its top, so that small moves of a large value show. */
  scale: "zero" | "range";
  floor?: number;
  ceiling?: number;
  label: string;
}

/** A card's sparkline: no axes, no interaction, cheap to redraw. */
export const Sparkline = memo(function Sparkline({ values, color, scale, floor = 0, ceiling = Infinity, label }: SparkProps) {
  const h = 24;
  const n = values.length;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let bottom = 0;
  let top: number;
  if (scale === "range") {
    const pad = Math.max((hi - lo) * 0.15, Math.abs(hi) * 0.02, 1e-9);
    bottom = lo - pad;
    top = hi + pad;
  } else {
    top = Math.min(ceiling, Math.max(floor, hi * 1.15));
  }
  if (!(top > bottom)) top = bottom + 1;
  let d = "";
  for (let i = 0; i < n; i++) {
    const x = n > 1 ? (i / (n - 1)) * 100 : 100;
    const y = h - ((Math.min(values[i], top) - bottom) / (top - bottom)) * (h - 2) - 1;
    d += `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
  }
  return (
    <svg className="spark" viewBox={`0 0 100 ${h}`} preserveAspectRatio="none" role="img" aria-label={label}>
      {n > 1 && (
        <>
          <path d={`${d}L100,${h}L0,${h}Z`} fill={color} className="spark-area" />
          <path d={d} stroke={color} className="spark-line" />
        </>
      )}
    </svg>
  );
});
