// The server grid: one card per server, virtualised against the window's scroll, so that
// 1,000 servers cost only the cards on screen (plus a row or two either side).
import { memo, useEffect, useLayoutEffect, useRef, useState } from "react";
import { Sparkline } from "./Chart";
import { useStore } from "./context";
import { bytes, ms, pct, rate } from "./format";
import { IconBolt, IconFault } from "./icons";
import type { ServerView } from "../state/model";

const MIN_CARD = 236;
const GAP = 12;
const CARD_H = 156;
const ROW_H = CARD_H + GAP;
const OVERSCAN_ROWS = 2;

interface GridProps {
  servers: readonly ServerView[];
  selected: ReadonlySet<number>;
  toggle: (id: number) => void;
  open: (id: number) => void;
}

export function ServerGrid({ servers, selected, toggle, open }: GridProps) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(1200);
  const [range, setRange] = useState({ first: 0, last: 8 });
  const columns = Math.max(1, Math.floor((width + GAP) / (MIN_CARD + GAP)));
  const rows = Math.ceil(servers.length / columns);
  const cardW = (width - GAP * (columns - 1)) / columns;

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    setWidth(el.clientWidth);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    let frame = 0;
    const measure = () => {
      frame = 0;
      const el = box.current;
      if (!el) return;
      const top = el.getBoundingClientRect().top;
      const first = Math.max(0, Math.floor(-top / ROW_H) - OVERSCAN_ROWS);
      const last = Math.max(first, Math.ceil((window.innerHeight - top) / ROW_H) + OVERSCAN_ROWS);
      setRange((r) => (r.first === first && r.last === last ? r : { first, last }));
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(measure);
    };
    measure();
    window.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", schedule);
    return () => {
      window.removeEventListener("scroll", schedule);
      window.removeEventListener("resize", schedule);
      cancelAnimationFrame(frame);
    };
  }, [rows, columns]);

  const start = Math.min(servers.length, range.first * columns);
  const end = Math.min(servers.length, (range.last + 1) * columns);
  const visible = servers.slice(start, end);

  if (servers.length === 0) {
    return (
      <div className="grid-empty" ref={box}>
        No servers match.
      </div>
    );
  }
  return (
    <div
      ref={box}
      className="grid"
      style={{ height: rows * ROW_H - GAP }}
      role="list"
      aria-label={`Servers (${servers.length})`}
      data-testid="server-grid"
    >
      {visible.map((s, i) => {
        const index = start + i;
        const x = (index % columns) * (cardW + GAP);
        const y = Math.floor(index / columns) * ROW_H;
        return (
          <ServerCard
            key={s.id}
            server={s}
            x={x}
            y={y}
            w={cardW}
            selected={selected.has(s.id)}
            toggle={toggle}
            open={open}
          />
        );
      })}
    </div>
  );
}

interface CardProps {
  server: ServerView;
  x: number;
  y: number;
  w: number;
  selected: boolean;
  toggle: (id: number) => void;
  open: (id: number) => void;
}

const ServerCard = memo(function ServerCard({ server: s, x, y, w, selected, toggle, open }: CardProps) {
  const series = useStore().series.get(s.id);
  const cpu = series?.cpu.toArray() ?? [];
  const mem = series?.memory.toArray() ?? [];
  const cpuMax = Math.max(100, (s.cpuLimitCores || 1) * 100);
  const faults = s.faults.map((f) => f.text).join("; ");
  // The card has no room for a swarm server's placement: its footer line, which shows the
  // address, names it on hover instead.
  const footTitle = [s.reason, s.placement].filter(Boolean).join(" · ");
  return (
    <article
      role="listitem"
      className={`card st-${s.status}${selected ? " is-selected" : ""}`}
      style={{ transform: `translate(${x}px, ${y}px)`, width: w, height: CARD_H }}
      data-testid={`server-card-${s.id}`}
      data-status={s.status}
      data-faults={s.faults.map((f) => f.kind).join(",")}
      aria-label={`${s.name}, ${s.status}${faults ? `, faults: ${faults}` : ""}`}
    >
      <div className="card-head">
        <input
          type="checkbox"
          className="check"
          checked={selected}
          onChange={() => toggle(s.id)}
          aria-label={`Select ${s.name}`}
        />
        <button type="button" className="card-name" onClick={() => open(s.id)} aria-label={`${s.name}: open details`}>
          {s.name}
        </button>
        {s.simulating && (
          <span className="load-tag" title="Simulating load">
            <IconBolt />
          </span>
        )}
        {faults && (
          <span className="fault-tag" title={`Faults: ${faults}`} data-testid={`faults-${s.id}`}>
            <IconFault />
            {s.faults.length}
            <span className="sr-only">{s.faults.length === 1 ? " fault" : " faults"}</span>
          </span>
        )}
        <span className="badge" data-testid={`status-${s.id}`} title={s.reason}>
          <span className="status-dot" aria-hidden="true" />
          {s.status}
        </span>
      </div>
      <div className="metric-row">
        <span className="metric-label">CPU</span>
        <span className="metric-value" data-testid={`cpu-${s.id}`}>
          {pct(s.cpu)}
        </span>
        <Sparkline values={cpu} color="var(--violet)" scale="zero" floor={10} ceiling={cpuMax} label={`${s.name} CPU, last minute`} />
      </div>
      <div className="metric-row">
        <span className="metric-label">MEM</span>
        <span className="metric-value" data-testid={`mem-${s.id}`}>
          {bytes(s.memory)}
        </span>
        <Sparkline values={mem} color="var(--teal)" scale="range" label={`${s.name} memory, last minute`} />
      </div>
      <div className="card-foot">
        <span>
          <b data-testid={`rps-${s.id}`}>{rate(s.rps)}</b> req/s
        </span>
        <span>p99 {s.p99 > 0 ? ms(s.p99) : "–"}</span>
        <span className="card-reason" title={footTitle}>
          {s.status === "healthy" ? s.address : s.reason}
        </span>
      </div>
    </article>
  );
});
