// The scenario panel: paste or load a scenario file and start it (checked first: its problems
// are listed with their line and field, and nothing starts), the runs (polled every 2 s while
// shown) with a Stop for a running one, and the selected run (polled every second while it
// runs): per-second throughput, errors and p99 with the load phases and the faults as bands,
// the faults, the steady-state checks and the verdicts, provisional until final.
import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { Chart } from "./Chart";
import { navigate, useNow, useToast } from "./context";
import { clock, count, ms, pct, rate } from "./format";
import { errorText, farmClient } from "../api/client";
import { scenarioRuns, useScenarioRuns } from "../api/scenarios";
import type { ScenarioProblem, ScenarioReport } from "../gen/farm/v1/farm_pb";
import { lineOffset, runBands, runRange, runState, timelineSeries, verdictCounts, verdictView, type RunState, type VerdictStatus } from "../state/scenario";

const STATE_TEXT: Record<RunState, string> = {
  running: "Running",
  passed: "Passed",
  failed: "Failed",
  aborted: "Aborted",
  error: "Error",
  unknown: "Unknown",
};

const VERDICT_TEXT: Record<VerdictStatus, string> = {
  passed: "passed",
  failed: "failed",
  passing: "passing so far",
  failing: "failing so far",
};

export function Scenarios({ runId }: { runId: string | null }) {
  const list = useScenarioRuns();
  const newestFirst = useMemo(() => list.runs.slice().reverse(), [list.runs]);
  const selected = runId ?? newestFirst[0]?.runId ?? null;
  const listed = newestFirst.find((r) => r.runId === selected) ?? null;
  return (
    <div className="page scenarios">
      <div className="sc-side">
        <ScenarioForm />
        <RunList runs={newestFirst} selected={selected} error={list.error} unsupported={list.unsupported} loaded={list.loaded} />
      </div>
      <RunDetail key={selected ?? ""} runId={selected} listed={listed} />
    </div>
  );
}

function StateBadge({ state, testid }: { state: RunState; testid?: string }) {
  return (
    <span className={`badge sc-${state}`} data-testid={testid} data-state={state}>
      <span className="status-dot" aria-hidden="true" />
      {STATE_TEXT[state]}
    </span>
  );
}

async function stopRun(runId: string, toast: ReturnType<typeof useToast>): Promise<ScenarioReport | null> {
  try {
    const r = await farmClient.stopScenario({ runId });
    toast("info", `Scenario ${runId} stopped`);
    return r.report ?? null;
  } catch (e) {
    toast("error", `Could not stop ${runId}: ${errorText(e)}`);
    return null;
  } finally {
    scenarioRuns.refresh();
  }
}

// ── the file and its start ───────────────────────────────────────────────────

const SOURCE_KEY = "farm.scenario.source";

/** The file being edited, kept in the tab's sessionStorage so that leaving the section keeps it. */
function useSource(): [string, (s: string) => void] {
  const [source, set] = useState(() => {
    try {
      return sessionStorage.getItem(SOURCE_KEY) ?? "";
    } catch {
      return "";
    }
  });
  const setSource = (s: string) => {
    set(s);
    try {
      sessionStorage.setItem(SOURCE_KEY, s);
    } catch {
      // Storage disabled or full: the text lives until the section is left.
    }
  };
  return [source, setSource];
}

function ScenarioForm() {
  const toast = useToast();
  const [source, setSource] = useSource();
  const [problems, setProblems] = useState<ScenarioProblem[] | null>(null);
  const [valid, setValid] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<"check" | "start" | null>(null);
  const text = useRef<HTMLTextAreaElement>(null);

  const check = async (): Promise<boolean> => {
    setError(null);
    setValid(false);
    const r = await farmClient.checkScenario({ source });
    setProblems(r.valid ? [] : r.problems);
    setValid(r.valid);
    return r.valid;
  };

  const run = (what: "check" | "start") => async (e?: FormEvent) => {
    e?.preventDefault();
    if (!source.trim()) {
      setError("Paste a scenario file, or load one");
      return;
    }
    setBusy(what);
    try {
      if (!(await check())) return;
      if (what === "start") {
        const r = await farmClient.startScenario({ source });
        toast("ok", `Scenario ${r.runId} started`);
        setValid(false);
        setProblems(null);
        scenarioRuns.refresh();
        navigate(`scenarios/${encodeURIComponent(r.runId)}`);
      }
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(null);
    }
  };

  const load = async (file: File | undefined) => {
    if (!file) return;
    try {
      setSource(await file.text());
      setProblems(null);
      setValid(false);
      setError(null);
    } catch (err) {
      setError(`Could not read ${file.name}: ${errorText(err)}`);
    }
  };

  /** Puts the caret at the start of a problem's line. */
  const goTo = (line: number) => {
    const area = text.current;
    if (!area) return;
    const at = lineOffset(source, line);
    const end = source.indexOf("\n", at);
    area.focus();
    area.setSelectionRange(at, end < 0 ? source.length : end);
  };

  return (
    <form className="panel sc-form" onSubmit={run("start")} aria-label="Start a scenario">
      <h2>Scenario</h2>
      <div className="field">
        <label htmlFor="sc-source">Scenario file (YAML)</label>
        <textarea
          id="sc-source"
          ref={text}
          rows={16}
          wrap="off"
          spellCheck={false}
          autoComplete="off"
          value={source}
          onChange={(e) => {
            setSource(e.target.value);
            setValid(false);
          }}
          aria-invalid={problems && problems.length ? true : undefined}
          aria-describedby="sc-source-help"
          data-testid="scenario-source"
          placeholder={PLACEHOLDER}
        />
        <small id="sc-source-help" className="field-help">
          Load phases, faults at offsets and SLO assertions; the format is in docs/scenarios.md. It is checked against this farm before it starts.
        </small>
      </div>
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy !== null}>
          {busy === "start" ? "Starting…" : "Start scenario"}
        </button>
        <button type="button" className="btn" onClick={() => void run("check")()} disabled={busy !== null}>
          {busy === "check" ? "Checking…" : "Check"}
        </button>
        <button
          type="button"
          className="btn btn-ghost"
          onClick={() => {
            setSource(EXAMPLE);
            setProblems(null);
            setValid(false);
            setError(null);
          }}
          disabled={busy !== null}
        >
          Example
        </button>
        <label className="btn btn-ghost file-btn">
          Load a file…
          <input type="file" accept=".yaml,.yml,text/yaml,application/yaml" className="sr-only" onChange={(e) => void load(e.target.files?.[0])} />
        </label>
      </div>
      {error && (
        <p className="error-text" role="alert" data-testid="scenario-start-error">
          {error}
        </p>
      )}
      {valid && (
        <p className="ok-text" role="status">
          The file would run on this farm.
        </p>
      )}
      {problems && problems.length > 0 && (
        <div className="sc-problems" role="alert">
          <h3>
            {problems.length} {problems.length === 1 ? "problem" : "problems"}: not started
          </h3>
          <ul data-testid="scenario-problems">
            {problems.map((p, i) => (
              <li key={i} data-testid="scenario-problem" data-line={p.line} data-field={p.field}>
                {p.line > 0 ? (
                  <button type="button" className="link-btn" onClick={() => goTo(p.line)} aria-label={`Go to line ${p.line}${p.field ? `, ${p.field}` : ""}`}>
                    line {p.line}
                  </button>
                ) : (
                  <span className="muted">file</span>
                )}
                {p.field && <code>{p.field}</code>}
                <span>{p.message}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </form>
  );
}

/** A small file to start from: server 2 slow for 5 s under 50 req/s. */
const EXAMPLE = `version: 1
name: slow-server-2
steady_state:
  - { check: all_healthy, within: 10s }
load:
  phases:
    - { name: warm, for: 5s, rate: 50 }
    - { name: hold, for: 10s, rate: 50 }
faults:
  - { id: slow2, kind: latency, servers: [2], at: 5s, for: 5s, delay: 200ms }
slo:
  - { metric: latency.p99, lt: 300ms, during: hold }
  - { metric: error_rate, lt: 1% }
  - { recover: slow2, metric: latency.p99, lt: 100ms, within: 3s, stable_for: 2s }
`;

const PLACEHOLDER = `${EXAMPLE.split("\n").slice(0, 9).join("\n")}\n…`;

// ── the runs ─────────────────────────────────────────────────────────────────

function RunList({ runs, selected, error, unsupported, loaded }: { runs: readonly ScenarioReport[]; selected: string | null; error: string | null; unsupported: boolean; loaded: boolean }) {
  const toast = useToast();
  const [stopping, setStopping] = useState<string | null>(null);
  return (
    <section className="panel sc-runs" aria-label="Scenario runs">
      <h2>Runs</h2>
      {unsupported ? (
        <p className="muted">This farm's controller does not run scenarios.</p>
      ) : error ? (
        <p className="error-text">Could not list the runs: {error}</p>
      ) : null}
      {!unsupported && loaded && runs.length === 0 && <p className="muted">No scenario has run yet.</p>}
      {runs.length > 0 && (
        <div className="table-wrap">
          <table className="table sc-run-table" data-testid="scenario-runs">
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">State</th>
                <th scope="col">Verdicts</th>
                <th scope="col">
                  <span className="sr-only">Stop</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {runs.map((r) => {
                const state = runState(r.state);
                const c = verdictCounts(r.verdicts);
                const current = r.runId === selected;
                return (
                  <tr key={r.runId} className={current ? "is-current" : undefined} data-testid={`scenario-row-${r.runId}`} data-state={state}>
                    <td>
                      <button type="button" className="link-btn sc-run-name" onClick={() => navigate(`scenarios/${encodeURIComponent(r.runId)}`)} aria-current={current ? "true" : undefined}>
                        {r.name || r.runId}
                      </button>
                      <div className="muted sc-run-id">
                        {r.runId} · <time dateTime={new Date(Number(r.startedAtMs)).toISOString()}>{clock(Number(r.startedAtMs))}</time>
                      </div>
                    </td>
                    <td>
                      <StateBadge state={state} />
                    </td>
                    <td>
                      <VerdictTally passed={c.passed} failed={c.failed} provisional={c.provisional} />
                    </td>
                    <td>
                      {state === "running" && (
                        <button
                          type="button"
                          className="btn btn-bad btn-small"
                          disabled={stopping === r.runId}
                          aria-label={`Stop ${r.name || r.runId} (${r.runId})`}
                          onClick={async () => {
                            setStopping(r.runId);
                            await stopRun(r.runId, toast);
                            setStopping(null);
                          }}
                        >
                          Stop
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function VerdictTally({ passed, failed, provisional }: { passed: number; failed: number; provisional: number }) {
  if (passed + failed === 0) return <span className="muted">–</span>;
  return (
    <span className="sc-tally" aria-label={`${passed} passed, ${failed} failed${provisional ? `, ${provisional} provisional` : ""}`}>
      <span className="ok-text">✓ {passed}</span> <span className={failed ? "bad-text" : "muted"}>✗ {failed}</span>
      {provisional > 0 && <span className="muted"> · so far</span>}
    </span>
  );
}

// ── one run ──────────────────────────────────────────────────────────────────

/** GetScenarioRun now and every second while the run goes on; once for a finished run. */
function useScenarioReport(runId: string | null): { report: ScenarioReport | null; error: string | null; replace: (r: ScenarioReport) => void } {
  const [report, setReport] = useState<ScenarioReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [nonce, setNonce] = useState(0);
  useEffect(() => {
    if (!runId) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const r = await farmClient.getScenarioRun({ runId });
        if (stopped) return;
        setReport(r.report ?? null);
        setError(null);
        if (r.report && runState(r.report.state) === "running") timer = setTimeout(load, 1000);
      } catch (e) {
        if (stopped) return;
        setError(errorText(e));
        if (!(e instanceof ConnectError && (e.code === Code.NotFound || e.code === Code.Unimplemented))) timer = setTimeout(load, 3000);
      }
    };
    void load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [runId, nonce]);
  return {
    report,
    error,
    replace: (r) => {
      setReport(r);
      setNonce((n) => n + 1);
    },
  };
}

function RunDetail({ runId, listed }: { runId: string | null; listed: ScenarioReport | null }) {
  const toast = useToast();
  const { report: fetched, error, replace } = useScenarioReport(runId);
  const [stopping, setStopping] = useState(false);
  const now = useNow(1000);
  // Until the first answer, the listed report (without its timeline) stands in.
  const report = fetched ?? listed;
  const state = report ? runState(report.state) : "unknown";
  const base = report ? Number(report.loadStartedAtMs) : 0;
  const live = state === "running";
  const bands = useMemo(() => (report ? runBands(report, live ? now : Infinity) : []), [report, live, now]);
  const range = useMemo(() => (report ? runRange(report, now) : null), [report, now]);
  const series = useMemo(() => timelineSeries(report?.load?.timeline ?? [], base), [report, base]);

  if (!runId) {
    return (
      <section className="panel sc-detail" aria-label="Scenario run" data-testid="scenario-detail" data-state="none">
        <p className="muted">Start a scenario to follow it here; finished runs stay listed.</p>
      </section>
    );
  }
  if (!report) {
    return (
      <section className="panel sc-detail" aria-label="Scenario run" data-testid="scenario-detail" data-state="loading">
        {error ? <p className="error-text">Could not load {runId}: {error}</p> : <p className="muted">Loading {runId}…</p>}
      </section>
    );
  }

  const load = report.load;
  const counts = verdictCounts(report.verdicts);
  const spanS = range ? Math.round((range[1] - range[0]) / 1000) : 0;
  const foot = ["0 s", `${spanS} s`] as const;
  const requests = Number(load?.requests ?? 0n);
  const failures = Number(load?.failures ?? 0n);
  const phaseFigures = new Map((load?.phases ?? []).map((p) => [p.name, p]));
  const ended = Number(report.endedAtMs);
  return (
    <section className="panel sc-detail" aria-label={`Scenario run ${report.name}`} data-testid="scenario-detail" data-state={state} data-run={report.runId}>
      <div className="lt-head">
        <h2>{report.name || report.runId}</h2>
        <code className="muted">{report.runId}</code>
        <StateBadge state={state} testid="scenario-state" />
        {report.verdicts.length > 0 && (
          <span className="muted" data-testid="scenario-verdict-counts">
            {counts.passed} passed · {counts.failed} failed{counts.provisional ? " so far" : ""}
          </span>
        )}
        {live && (
          <button
            type="button"
            className="btn btn-bad sc-stop"
            disabled={stopping}
            onClick={async () => {
              setStopping(true);
              const r = await stopRun(report.runId, toast);
              if (r) replace(r);
              setStopping(false);
            }}
          >
            {stopping ? "Stopping…" : "Stop scenario"}
          </button>
        )}
      </div>
      <p className="muted sc-times">
        started {clock(Number(report.startedAtMs))}
        {ended > 0 && ` · ended ${clock(ended)} (${((ended - Number(report.startedAtMs)) / 1000).toFixed(1)} s)`}
        {base > 0 && ` · load from ${clock(base)}`} · seed {report.seed.toString()}
      </p>
      {(report.reason || report.abortedBy) && (
        <p className={state === "error" || state === "aborted" ? "error-text" : "muted"} data-testid="scenario-reason">
          {report.abortedBy && (
            <>
              Aborted by <code>{report.abortedBy}</code>
              {report.reason ? ": " : ""}
            </>
          )}
          {report.reason}
        </p>
      )}
      {error && <p className="error-text">Could not refresh: {error}</p>}

      {load && (
        <div className="kpis lt-kpis">
          <Tile label="Requests" value={count(requests)} />
          <Tile label="Throughput" value={`${rate(load.requestsPerSecond)}/s`} />
          <Tile label="Errors" value={requests ? pct((failures / requests) * 100, 2) : "–"} sub={`${count(failures)} failed`} />
          <Tile label="p99" value={ms(load.latency?.p99Ms ?? NaN)} sub={`p50 ${ms(load.latency?.p50Ms ?? NaN)}`} />
        </div>
      )}

      {range ? (
        <div className="sc-charts">
          <Chart
            title="Throughput (requests/s)"
            times={series.times}
            range={range}
            bands={bands}
            foot={foot}
            height={110}
            testid="scenario-chart-throughput"
            empty={live ? "Waiting for the first second…" : "No requests"}
            series={[{ label: "requests/s", values: series.requests, color: "var(--accent)", format: rate, area: true }]}
          />
          <Chart
            title="Errors (failed requests/s)"
            times={series.times}
            range={range}
            bands={bands}
            foot={foot}
            height={110}
            testid="scenario-chart-errors"
            empty={live ? "Waiting for the first second…" : "No requests"}
            series={[{ label: "failed/s", values: series.failures, color: "var(--bad)", format: rate, area: true }]}
            headline={requests ? pct((failures / requests) * 100, 2) : undefined}
          />
          <Chart
            title="Latency"
            times={series.times}
            range={range}
            bands={bands}
            foot={foot}
            height={110}
            testid="scenario-chart-latency"
            empty={live ? "Waiting for the first second…" : "No answers"}
            series={[
              { label: "p99", values: series.p99, color: "var(--warn)", format: ms },
              { label: "p50", values: series.p50, color: "var(--accent)", format: ms },
            ]}
          />
        </div>
      ) : (
        <p className="muted">{live ? "Checking the steady state before the load…" : "The load did not start."}</p>
      )}

      {report.phases.length > 0 && (
        <div className="table-wrap">
          <table className="table" data-testid="scenario-phases">
            <caption>Load phases</caption>
            <thead>
              <tr>
                <th scope="col">Phase</th>
                <th scope="col">From – to</th>
                <th scope="col">Load</th>
                <th scope="col">Requests</th>
                <th scope="col">Failed</th>
                <th scope="col">Throughput</th>
                <th scope="col">p99</th>
              </tr>
            </thead>
            <tbody>
              {report.phases.map((p, i) => {
                const f = phaseFigures.get(p.name);
                return (
                  <tr key={p.name}>
                    <th scope="row">
                      <i className={`sc-swatch band-swatch-${i % 2}`} aria-hidden="true" /> {p.name}
                    </th>
                    <td>
                      {seconds(p.startMs)} – {seconds(p.endMs)}
                    </td>
                    <td>{p.concurrency > 0 ? `${p.concurrency} workers` : p.rateFrom === p.rateTo ? `${rate(p.rateFrom)} req/s` : `${rate(p.rateFrom)} → ${rate(p.rateTo)} req/s`}</td>
                    <td>{f ? count(Number(f.requests)) : "–"}</td>
                    <td className={f && Number(f.failures) ? "bad-text" : undefined}>{f ? count(Number(f.failures)) : "–"}</td>
                    <td>{f ? `${rate(f.requestsPerSecond)}/s` : "–"}</td>
                    <td>{f?.latency ? ms(f.latency.p99Ms) : "–"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}

      {report.faults.length > 0 && (
        <div className="table-wrap">
          <table className="table" data-testid="scenario-faults">
            <caption>Faults</caption>
            <thead>
              <tr>
                <th scope="col">Fault</th>
                <th scope="col">Kind</th>
                <th scope="col">Servers</th>
                <th scope="col">Planned</th>
                <th scope="col">Applied – ended</th>
              </tr>
            </thead>
            <tbody>
              {report.faults.map((f) => (
                <tr key={f.id} data-testid={`scenario-fault-${f.id}`}>
                  <th scope="row">
                    <i className="sc-swatch sc-swatch-fault" aria-hidden="true" /> {f.id}
                  </th>
                  <td>{f.kind}</td>
                  <td>{f.serverIds.length ? f.serverIds.join(", ") : "–"}</td>
                  <td>
                    at {seconds(f.atMs)}
                    {f.forMs > 0 ? ` for ${seconds(f.forMs)}` : ""}
                  </td>
                  <td>
                    {f.error ? (
                      <span className="bad-text">{f.error}</span>
                    ) : f.appliedMs > 0 || f.endedMs > 0 ? (
                      `${seconds(f.appliedMs)} – ${f.endedMs > 0 ? seconds(f.endedMs) : f.forMs === 0 ? "(a moment)" : live ? "now" : "–"}`
                    ) : (
                      <span className="muted">{live ? "not yet" : "not applied"}</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      {report.checks.length > 0 && (
        <div className="table-wrap">
          <table className="table" data-testid="scenario-checks">
            <caption>Steady state</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Check</th>
                <th scope="col">Result</th>
                <th scope="col">Detail</th>
                <th scope="col">Line</th>
              </tr>
            </thead>
            <tbody>
              {report.checks.map((c, i) => (
                <tr key={i} data-testid="check-row" data-passed={String(c.passed)}>
                  <td>{c.when}</td>
                  <td>
                    <code>{c.check}</code>
                  </td>
                  <td className={c.passed ? "ok-text" : "bad-text"}>{c.passed ? "held" : "did not hold"}</td>
                  <td>{c.detail}</td>
                  <td>{c.line || "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      {report.verdicts.length > 0 && (
        <div className="table-wrap">
          <table className="table sc-verdicts" data-testid="scenario-verdicts">
            <caption>
              Verdicts{counts.provisional > 0 && <span className="sc-provisional"> · provisional while the run goes on</span>}
            </caption>
            <thead>
              <tr>
                <th scope="col">Assertion</th>
                <th scope="col">Result</th>
                <th scope="col">Observed</th>
                <th scope="col">Threshold</th>
                <th scope="col">Detail</th>
                <th scope="col">Line</th>
              </tr>
            </thead>
            <tbody>
              {report.verdicts.map((raw, i) => {
                const v = verdictView(raw);
                return (
                  <tr key={i} data-testid="verdict-row" data-status={v.status} data-passed={String(v.passed)} data-final={String(v.final)}>
                    <td>
                      <code>{v.assertion}</code>
                    </td>
                    <td>
                      <span className={`verdict verdict-${v.passed ? "pass" : "fail"}${v.final ? "" : " verdict-provisional"}`}>{v.passed ? "✓" : "✗"} {VERDICT_TEXT[v.status]}</span>
                      {!v.final && <span className="sc-provisional-tag">provisional</span>}
                    </td>
                    <td>{v.observed}</td>
                    <td>{v.threshold}</td>
                    <td className="sc-detail-text">{v.detail}</td>
                    <td>{v.line || "–"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function seconds(msValue: number): string {
  return `${Number((msValue / 1000).toFixed(2))} s`;
}

function Tile({ label, value, sub }: { label: string; value: string; sub?: string }) {
  return (
    <div className="kpi">
      <div className="kpi-label">{label}</div>
      <div className="kpi-value">{value}</div>
      {sub && <div className="kpi-sub">{sub}</div>}
    </div>
  );
}
