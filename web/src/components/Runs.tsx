// The farm's history: its runs (load tests and scenario runs, newest first, paged; the newest
// page polled every 5 s while shown), two of them compared side by side (latency
// percentiles, throughput, errors, duration, each with its difference, and their per-second
// throughput and p99 overlaid from their starts), and the newest events (polled every 3 s
// while shown). The history outlives the controller: a run it was stopped during is
// "interrupted". The two runs compared are in the address (`#/runs/lt-1/lt-2`).
import { useEffect, useMemo, useState } from "react";
import { Chart } from "./Chart";
import { navigate, useNow } from "./context";
import { count, ms, pct, rate } from "./format";
import { useEvents, useRun, useRuns } from "../api/history";
import type { GetRunResponse, RunSummary } from "../gen/farm/v1/farm_pb";
import {
  alignTimelines,
  baselineFirst,
  compareRows,
  eventKindText,
  eventSubject,
  eventTone,
  historyState,
  kindName,
  runFigures,
  stamp,
  toggleChoice,
  type CompareRow,
  type HistoryState,
} from "../state/runs";

const STATE_TEXT: Record<HistoryState, string> = {
  running: "Running",
  finished: "Finished",
  cancelled: "Cancelled",
  passed: "Passed",
  failed: "Failed",
  aborted: "Aborted",
  error: "Error",
  interrupted: "Interrupted",
  unknown: "Unknown",
};

const A_COLOR = "var(--series-1)";
const B_COLOR = "var(--series-4)";

export function Runs({ chosen: routed }: { chosen: readonly string[] }) {
  const list = useRuns();
  // The choice follows the address (back and forward too), and a click at once: the address
  // changes after the click's event, and a checkbox must not bounce back in between.
  const routedKey = routed.join("/");
  const [chosen, setChosen] = useState<readonly string[]>(routed);
  useEffect(() => setChosen(routedKey ? routedKey.split("/") : []), [routedKey]);
  const choose = (runId: string) => {
    const next = toggleChoice(chosen, runId);
    setChosen(next);
    navigate(["runs", ...next.map(encodeURIComponent)].join("/"));
  };
  const [first, second] = chosen;
  return (
    <div className="page runs">
      <div className="runs-main">
        <RunTable list={list} chosen={chosen} choose={choose} />
        {first && second ? (
          <Compare key={`${first}/${second}`} ids={[first, second]} listed={list.runs} />
        ) : (
          <section className="panel" aria-label="Comparison" data-testid="runs-compare" data-state={first ? "one" : "none"}>
            <h2>Compare</h2>
            <p className="muted">{first ? `${first} is chosen: choose one more run to compare it with.` : "Choose two runs in the list to compare them side by side."}</p>
          </section>
        )}
      </div>
      <Events />
    </div>
  );
}

export function RunStateBadge({ state, testid }: { state: HistoryState; testid?: string }) {
  return (
    <span className={`badge run-${state}`} data-testid={testid} data-state={state}>
      <span className="status-dot" aria-hidden="true" />
      {STATE_TEXT[state]}
    </span>
  );
}

// ── the list ─────────────────────────────────────────────────────────────────

function RunTable({ list, chosen, choose }: { list: ReturnType<typeof useRuns>; chosen: readonly string[]; choose: (runId: string) => void }) {
  const now = useNow(10_000);
  const { runs } = list;
  return (
    <section className="panel runs-list" aria-label="Runs">
      <div className="lt-head">
        <h2>Runs</h2>
        {runs.length > 0 && (
          <span className="muted" data-testid="runs-count">
            {runs.length} of {count(list.total)}
          </span>
        )}
      </div>
      {list.unsupported ? (
        <p className="muted">This farm's controller keeps no history.</p>
      ) : list.error ? (
        <p className="error-text">Could not list the runs: {list.error}</p>
      ) : null}
      {!list.unsupported && list.loaded && runs.length === 0 && !list.error && <p className="muted">No load test or scenario has run yet.</p>}
      {runs.length > 0 && (
        <div className="table-wrap">
          <table className="table runs-table" data-testid="runs-table">
            <thead>
              <tr>
                <th scope="col">
                  <span className="sr-only">Compare</span>
                </th>
                <th scope="col">Run</th>
                <th scope="col">Kind</th>
                <th scope="col">State</th>
                <th scope="col">Started</th>
                <th scope="col" className="num">
                  Requests
                </th>
                <th scope="col" className="num">
                  Failures
                </th>
                <th scope="col" className="num">
                  req/s
                </th>
                <th scope="col" className="num">
                  p99
                </th>
              </tr>
            </thead>
            <tbody>
              {runs.map((r) => {
                const state = historyState(r.state);
                const on = chosen.includes(r.runId);
                const failures = Number(r.failures);
                const verdicts = r.verdictsTotal > 0 ? ` · ${r.verdictsPassed}/${r.verdictsTotal} held` : "";
                return (
                  <tr key={r.runId} className={on ? "is-current" : undefined} data-testid={`run-row-${r.runId}`} data-state={state} data-kind={kindName(r.kind)}>
                    <td>
                      <input type="checkbox" className="check" checked={on} onChange={() => choose(r.runId)} aria-label={`Compare ${r.runId}`} />
                    </td>
                    <td>
                      <div className="runs-name" title={r.name}>
                        {r.name || r.runId}
                      </div>
                      <div className="muted sc-run-id">
                        {r.runId}
                        {verdicts}
                      </div>
                    </td>
                    <td>{kindName(r.kind)}</td>
                    <td>
                      <RunStateBadge state={state} />
                    </td>
                    <td>
                      <time dateTime={new Date(Number(r.startedAtMs)).toISOString()}>{stamp(Number(r.startedAtMs), now)}</time>
                    </td>
                    <td className="num">{count(Number(r.requests))}</td>
                    <td className={`num${failures ? " bad-text" : ""}`}>{count(failures)}</td>
                    <td className="num">{rate(r.requestsPerSecond)}</td>
                    <td className="num">{r.latency ? ms(r.latency.p99Ms) : "–"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {list.more && (
        <div className="form-actions">
          <button type="button" className="btn" onClick={list.older} disabled={list.loadingOlder} data-testid="runs-older">
            {list.loadingOlder ? "Loading…" : "Older runs"}
          </button>
        </div>
      )}
    </section>
  );
}

// ── two runs side by side ────────────────────────────────────────────────────

function formatFigure(v: number, unit: CompareRow["unit"]): string {
  if (!Number.isFinite(v)) return "–";
  switch (unit) {
    case "ms":
      return ms(v);
    case "rps":
      return `${rate(v)}/s`;
    case "count":
      return count(v);
    case "percent":
      return pct(v, 2);
    case "seconds":
      return `${v.toFixed(1)} s`;
  }
}

const TONE_CLASS = { better: "ok-text", worse: "bad-text", same: "muted", none: "muted" } as const;

function Compare({ ids, listed }: { ids: readonly [string, string]; listed: readonly RunSummary[] }) {
  const summaries = ids.map((id) => listed.find((r) => r.runId === id) ?? null);
  const x = useRun(ids[0], summaries[0] ? historyState(summaries[0].state) === "running" : false);
  const y = useRun(ids[1], summaries[1] ? historyState(summaries[1].state) === "running" : false);
  // A run from the address that no loaded page lists: its own answer has its line.
  const sx = summaries[0] ?? x.run?.summary ?? null;
  const sy = summaries[1] ?? y.run?.summary ?? null;
  const errors = [x.error && `${ids[0]}: ${x.error}`, y.error && `${ids[1]}: ${y.error}`].filter((e): e is string => Boolean(e));

  if (!sx || !sy) {
    return (
      <section className="panel" aria-label="Comparison" data-testid="runs-compare" data-state="loading">
        <h2>Compare</h2>
        {errors.length ? <p className="error-text">Could not load {errors.join("; ")}</p> : <p className="muted">Loading {ids.join(" and ")}…</p>}
      </section>
    );
  }
  const byId = new Map<string, GetRunResponse | null>([
    [ids[0], x.run],
    [ids[1], y.run],
  ]);
  const [a, b] = baselineFirst(sx, sy);
  return <Comparison a={a} b={b} runA={byId.get(a.runId) ?? null} runB={byId.get(b.runId) ?? null} errors={errors} />;
}

function Comparison({ a, b, runA, runB, errors }: { a: RunSummary; b: RunSummary; runA: GetRunResponse | null; runB: GetRunResponse | null; errors: string[] }) {
  const fa = useMemo(() => runFigures(a, runA?.run), [a, runA]);
  const fb = useMemo(() => runFigures(b, runB?.run), [b, runB]);
  const rows = useMemo(() => compareRows(fa, fb), [fa, fb]);
  const aligned = useMemo(() => alignTimelines(fa.timeline, fb.timeline), [fa, fb]);
  const whole = runA !== null && runB !== null;
  const running = [a, b].filter((r) => historyState(r.state) === "running");
  const foot = ["0 s", `${aligned.seconds} s`] as const;
  const range = [0, Math.max(1, aligned.seconds) * 1000] as const;
  const since = (t: number) => `+${Math.floor(t / 1000)} s`;
  const noTimeline = [a, b].filter((_, i) => (i === 0 ? fa : fb).timeline.length === 0);
  return (
    <section className="panel runs-compare" aria-label={`Comparison of ${a.runId} and ${b.runId}`} data-testid="runs-compare" data-state={whole ? "ready" : "loading"} data-a={a.runId} data-b={b.runId}>
      <div className="lt-head">
        <h2>Compare</h2>
        <span className="muted">
          <b>{b.runId}</b> against <b>{a.runId}</b>, the older
        </span>
      </div>
      {errors.length > 0 && <p className="error-text">Could not load {errors.join("; ")}: figures from the list only.</p>}
      {running.length > 0 && <p className="muted">{running.map((r) => r.runId).join(" and ")} still running: the figures so far.</p>}
      <div className="table-wrap">
        <table className="table compare-table" data-testid="compare-table">
          <thead>
            <tr>
              <th scope="col">Figure</th>
              <RunHead run={a} color={A_COLOR} tag="A" />
              <RunHead run={b} color={B_COLOR} tag="B" />
              <th scope="col" className="num">
                Difference
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.key} data-testid={`compare-${r.key}`} data-a={r.a} data-b={r.b} data-diff={r.diff.value ?? ""} data-tone={r.diff.tone}>
                <th scope="row">{r.label}</th>
                <td className="num" data-testid="compare-a">
                  {formatFigure(r.a, r.unit)}
                </td>
                <td className="num" data-testid="compare-b">
                  {formatFigure(r.b, r.unit)}
                </td>
                <td className={`num ${TONE_CLASS[r.diff.tone]}`} data-testid="compare-diff">
                  {r.diff.text}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {aligned.seconds > 0 ? (
        <div className="sc-charts">
          <Chart
            title="Throughput from the start (requests/s)"
            times={aligned.times}
            range={range}
            foot={foot}
            timeLabel={since}
            height={110}
            testid="compare-chart-throughput"
            headline={`${rate(fa.rps)} vs ${rate(fb.rps)}/s`}
            series={[
              { label: a.runId, values: aligned.a.rps, color: A_COLOR, format: rate },
              { label: b.runId, values: aligned.b.rps, color: B_COLOR, format: rate },
            ]}
          />
          <Chart
            title="p99 from the start"
            times={aligned.times}
            range={range}
            foot={foot}
            timeLabel={since}
            height={110}
            testid="compare-chart-p99"
            headline={`${ms(fa.latency.p99)} vs ${ms(fb.latency.p99)}`}
            series={[
              { label: a.runId, values: aligned.a.p99, color: A_COLOR, format: ms },
              { label: b.runId, values: aligned.b.p99, color: B_COLOR, format: ms },
            ]}
          />
          <ul className="legend" aria-label="Runs on the charts">
            <li>
              <i style={{ background: A_COLOR }} /> A {a.runId}
            </li>
            <li>
              <i style={{ background: B_COLOR }} /> B {b.runId}
            </li>
          </ul>
        </div>
      ) : (
        whole && <p className="muted">Neither run has a per-second timeline.</p>
      )}
      {whole && aligned.seconds > 0 && noTimeline.length === 1 && <p className="muted">{noTimeline[0].runId} has no per-second timeline.</p>}
    </section>
  );
}

function RunHead({ run, color, tag }: { run: RunSummary; color: string; tag: string }) {
  return (
    <th scope="col" className="num compare-head">
      <div className="compare-run">
        <i style={{ background: color }} aria-hidden="true" /> {tag} <code>{run.runId}</code>
      </div>
      <div className="compare-run-name" title={run.name}>
        {run.name || kindName(run.kind)}
      </div>
      <div>
        <RunStateBadge state={historyState(run.state)} />
      </div>
    </th>
  );
}

// ── events ───────────────────────────────────────────────────────────────────

function Events() {
  const { events, error, unsupported, loaded } = useEvents(50);
  const now = useNow(10_000);
  return (
    <section className="panel events runs-events" aria-label="Events">
      <h2>Events</h2>
      {unsupported ? (
        <p className="muted">This farm's controller keeps no history.</p>
      ) : error ? (
        <p className="error-text">Could not list the events: {error}</p>
      ) : null}
      {loaded && !unsupported && events.length === 0 && !error && <p className="muted">No events yet.</p>}
      {events.length > 0 && (
        <ol data-testid="events">
          {events.map((e) => (
            <li key={e.seq.toString()} className={`event ev-${eventTone(e)}`} data-testid="event" data-kind={e.kind} data-server={e.serverId}>
              <span className="event-dot" aria-hidden="true" />
              <span className="event-kind">{eventKindText(e.kind)}</span>
              <span className="event-msg" title={e.detail}>
                <span className="event-subject">{eventSubject(e.serverId)}</span> {e.detail}
              </span>
              <time className="event-time" dateTime={new Date(Number(e.atMs)).toISOString()}>
                {stamp(Number(e.atMs), now)}
              </time>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
