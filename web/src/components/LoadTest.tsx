// The load-test panel: choose targets (or a front to send everything through), endpoint,
// when to stop and how to send (closed model: N workers; open model: a fixed rate), start,
// watch progress stream in once a second, read the result, cancel (aborting the call stops
// the run in the controller).
import { cloneElement, useEffect, useMemo, useRef, useState, type FormEvent, type InputHTMLAttributes, type ReactElement } from "react";
import { Chart } from "./Chart";
import { useSnapshot, useToast } from "./context";
import { count, ms, pct, rate } from "./format";
import { FrontResult } from "./FrontResult";
import { HttpFailure, HttpStatus } from "./HttpStatus";
import { errorText, farmClient } from "../api/client";
import { DRILL_ACTIONS, toFrontView, type DrillAction } from "../state/front";
import { buildSpec, type FormErrors, type Targets } from "../state/loadtest";
import type { LatencySummary, LoadTestResult, RunLoadTestResponse } from "../gen/farm/v1/farm_pb";

interface Run {
  id: string;
  done: boolean;
  stoppedReason: string;
  result: LoadTestResult | null;
  rpsSeries: { t: number; rps: number }[];
  error: string | null;
  totalRequests: number;
  durationSeconds: number;
}

const PATHS = ["/", "/health", "/slow-endpoint", "/error/500", "/data/16"];

const ACTION_LABELS: Record<DrillAction, string> = {
  kill: "Kill (SIGKILL)",
  stop: "Stop (graceful)",
  pause: "Pause (frozen)",
  health: "Fail its health check",
};

export function LoadTest({ selected }: { selected: ReadonlySet<number> }) {
  const toast = useToast();
  const { farm } = useSnapshot();
  const [targets, setTargets] = useState<Targets>(selected.size ? "selected" : "all");
  const [idText, setIdText] = useState("");
  const [method, setMethod] = useState("GET");
  const [path, setPath] = useState("/");
  const [stopBy, setStopBy] = useState<"requests" | "duration">("requests");
  const [requests, setRequests] = useState(2000);
  const [seconds, setSeconds] = useState(10);
  const [model, setModel] = useState<"closed" | "open">("closed");
  const [concurrency, setConcurrency] = useState(10);
  const [ratePerSecond, setRatePerSecond] = useState(200);
  const [timeoutMs, setTimeoutMs] = useState(10_000);
  const [throughFront, setThroughFront] = useState(false);
  const [frontUrl, setFrontUrl] = useState("");
  const [weights, setWeights] = useState("");
  const [withDrill, setWithDrill] = useState(false);
  const [drillAction, setDrillAction] = useState<DrillAction>("kill");
  const [drillServer, setDrillServer] = useState("");
  const [drillAt, setDrillAt] = useState("2");
  const [drillFor, setDrillFor] = useState("3");
  // A field's error shows once it has been left, or once a start was tried.
  const [touched, setTouched] = useState<ReadonlySet<string>>(new Set());
  const [tried, setTried] = useState(false);
  const [run, setRun] = useState<Run | null>(null);
  const [past, setPast] = useState<RunLoadTestResponse[]>([]);
  const abort = useRef<AbortController | null>(null);
  const running = run !== null && !run.done && run.error === null;

  const refreshPast = () => {
    farmClient
      .listLoadTests({})
      .then((r) => setPast(r.runs.slice().reverse()))
      .catch(() => {});
  };
  useEffect(refreshPast, []);
  useEffect(() => () => abort.current?.abort(), []);

  const farmIds = useMemo(() => new Set(farm.servers.keys()), [farm.servers]);
  const built = buildSpec(
    {
      targets,
      selected: [...selected],
      idText,
      method,
      path,
      stopBy,
      requests,
      seconds,
      model,
      concurrency,
      ratePerSecond,
      timeoutMs,
      front: throughFront
        ? {
            url: frontUrl,
            weights,
            drill: withDrill ? { action: drillAction, serverId: drillServer, atSeconds: drillAt, forSeconds: drillFor } : null,
          }
        : null,
    },
    farmIds,
  );
  const errors: FormErrors = "errors" in built ? built.errors : {};
  const shown = (field: string, error: string | undefined) => (error && (tried || touched.has(field)) ? error : undefined);
  const leave = (field: string) => () => setTouched((t) => (t.has(field) ? t : new Set(t).add(field)));

  const start = async (e: FormEvent) => {
    e.preventDefault();
    if ("errors" in built) {
      setTried(true);
      // Targets have no field of their own to show an error beside.
      if (built.errors.targets) toast("error", built.errors.targets);
      else (e.currentTarget as HTMLFormElement).querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
      return;
    }
    const { spec } = built;
    const controller = new AbortController();
    abort.current = controller;
    const fresh: Run = {
      id: "",
      done: false,
      stoppedReason: "",
      result: null,
      rpsSeries: [],
      error: null,
      totalRequests: stopBy === "requests" ? requests : 0,
      durationSeconds: stopBy === "duration" ? seconds : 0,
    };
    setRun(fresh);
    try {
      for await (const progress of farmClient.runLoadTest({ spec }, { signal: controller.signal })) {
        setRun((r) => {
          const base = r ?? fresh;
          const result = progress.result ?? null;
          const point = result ? { t: Date.now(), rps: result.requestsPerSecond } : null;
          return {
            ...base,
            id: progress.runId,
            done: progress.done,
            stoppedReason: progress.stoppedReason,
            result,
            rpsSeries: point && !progress.done ? [...base.rpsSeries, point] : base.rpsSeries,
          };
        });
        if (progress.done) {
          toast("ok", `Load test ${progress.runId} finished${progress.stoppedReason ? ` (${progress.stoppedReason})` : ""}`);
          refreshPast();
        }
      }
    } catch (err) {
      const cancelled = controller.signal.aborted;
      setRun((r) => (r ? { ...r, error: cancelled ? null : errorText(err), done: cancelled || r.done, stoppedReason: cancelled ? "cancelled" : r.stoppedReason } : r));
      if (cancelled) {
        toast("info", "Load test cancelled");
        setTimeout(refreshPast, 500);
      } else toast("error", `Load test failed: ${errorText(err)}`);
    } finally {
      if (abort.current === controller) abort.current = null;
    }
  };

  const r = run?.result ?? null;
  const front = useMemo(() => (r?.front ? toFrontView(r.front) : null), [r]);
  const progress = run && r ? (run.totalRequests > 0 ? Number(r.requests) / run.totalRequests : run.durationSeconds > 0 ? r.elapsedSeconds / run.durationSeconds : 0) : 0;

  return (
    <div className="page loadtest">
      <form className="panel lt-form" onSubmit={start} aria-label="Load test settings">
        <h2>Load test</h2>
        <fieldset disabled={throughFront} aria-describedby={throughFront ? "lt-targets-note" : undefined}>
          <legend>Targets</legend>
          {throughFront && (
            <p id="lt-targets-note" className="muted note">
              Through a front, every request goes to the front, which picks the servers.
            </p>
          )}
          <div className="seg">
            <label>
              <input type="radio" name="targets" checked={targets === "all"} onChange={() => setTargets("all")} /> All servers ({farm.ordered.length})
            </label>
            <label>
              <input type="radio" name="targets" checked={targets === "selected"} onChange={() => setTargets("selected")} disabled={selected.size === 0} /> Selected ({selected.size})
            </label>
            <label>
              <input type="radio" name="targets" checked={targets === "ids"} onChange={() => setTargets("ids")} /> Ids
            </label>
          </div>
          {targets === "ids" && (
            <label className="field">
              <span>Server ids</span>
              <input type="text" value={idText} onChange={(e) => setIdText(e.target.value)} placeholder="1-5, 8" aria-label="Server ids, like 1-5, 8" />
            </label>
          )}
        </fieldset>
        <fieldset>
          <legend>Through a front</legend>
          <label className="check-row">
            <input type="checkbox" checked={throughFront} onChange={(e) => setThroughFront(e.target.checked)} /> Send every request through a front (a load balancer)
          </label>
          {throughFront && (
            <>
              <Field id="lt-front-url" label="Front URL" error={shown("url", errors.frontUrl)}>
                <input type="text" inputMode="url" autoComplete="off" spellCheck={false} value={frontUrl} onChange={(e) => setFrontUrl(e.target.value)} onBlur={leave("url")} placeholder="http://127.0.0.1:8080" maxLength={256} />
              </Field>
              <Field id="lt-weights" label="Weights (optional)" error={shown("weights", errors.weights)} help="ID=WEIGHT, like 3=2, 4=1; empty: equal shares">
                <input type="text" autoComplete="off" spellCheck={false} value={weights} onChange={(e) => setWeights(e.target.value)} onBlur={leave("weights")} placeholder="3=2, 4=1" />
              </Field>
              <label className="check-row">
                <input type="checkbox" checked={withDrill} onChange={(e) => setWithDrill(e.target.checked)} /> Failover drill: take a server down during the run
              </label>
              {withDrill && (
                <div className="drill-form" role="group" aria-label="Failover drill">
                  <div className="row">
                    <label className="field grow">
                      <span>Action</span>
                      <select value={drillAction} onChange={(e) => setDrillAction(e.target.value as DrillAction)}>
                        {DRILL_ACTIONS.map((a) => (
                          <option key={a} value={a}>
                            {ACTION_LABELS[a]}
                          </option>
                        ))}
                      </select>
                    </label>
                    <Field id="lt-drill-server" label="Server id" error={shown("drillServer", errors.drill?.serverId)} narrow>
                      <input type="text" inputMode="numeric" value={drillServer} onChange={(e) => setDrillServer(e.target.value)} onBlur={leave("drillServer")} placeholder="2" />
                    </Field>
                  </div>
                  <div className="row">
                    <Field id="lt-drill-at" label="At (s)" error={shown("drillAt", errors.drill?.atSeconds)} narrow>
                      <input type="number" min={0} step="any" value={drillAt} onChange={(e) => setDrillAt(e.target.value)} onBlur={leave("drillAt")} />
                    </Field>
                    <Field id="lt-drill-for" label="For (s)" error={shown("drillFor", errors.drill?.forSeconds)} narrow>
                      <input type="number" min={0} step="any" value={drillFor} onChange={(e) => setDrillFor(e.target.value)} onBlur={leave("drillFor")} />
                    </Field>
                  </div>
                  {errors.drill?.run && (
                    <p className="field-error" id="lt-drill-run" aria-live="polite">
                      {errors.drill.run}
                    </p>
                  )}
                </div>
              )}
            </>
          )}
        </fieldset>
        <fieldset>
          <legend>Endpoint</legend>
          <div className="row">
            <label className="field narrow">
              <span>Method</span>
              <select value={method} onChange={(e) => setMethod(e.target.value)}>
                {["GET", "POST", "PUT", "DELETE", "HEAD"].map((m) => (
                  <option key={m}>{m}</option>
                ))}
              </select>
            </label>
            <label className="field grow">
              <span>Path</span>
              <input type="text" value={path} onChange={(e) => setPath(e.target.value)} list="lt-paths" required pattern="/.*" maxLength={256} />
              <datalist id="lt-paths">
                {PATHS.map((p) => (
                  <option key={p} value={p} />
                ))}
              </datalist>
            </label>
          </div>
        </fieldset>
        <fieldset>
          <legend>Stop after</legend>
          <div className="row">
            <div className="seg">
              <label>
                <input type="radio" name="stop" checked={stopBy === "requests"} onChange={() => setStopBy("requests")} /> Requests
              </label>
              <label>
                <input type="radio" name="stop" checked={stopBy === "duration"} onChange={() => setStopBy("duration")} /> Duration
              </label>
            </div>
            {stopBy === "requests" ? (
              <label className="field">
                <span>Total requests</span>
                <input type="number" min={1} max={10_000_000} value={requests} onChange={(e) => setRequests(Number(e.target.value))} required />
              </label>
            ) : (
              <label className="field">
                <span>Run for (s)</span>
                <input type="number" min={1} max={3600} value={seconds} onChange={(e) => setSeconds(Number(e.target.value))} required />
              </label>
            )}
          </div>
        </fieldset>
        <fieldset>
          <legend>Sending</legend>
          <div className="row">
            <div className="seg">
              <label title="N workers, each sends when its previous request is answered">
                <input type="radio" name="model" checked={model === "closed"} onChange={() => setModel("closed")} /> Concurrency
              </label>
              <label title="A fixed rate, whatever the answers do (latency from the intended send time)">
                <input type="radio" name="model" checked={model === "open"} onChange={() => setModel("open")} /> Rate
              </label>
            </div>
            {model === "open" && (
              <label className="field">
                <span>Requests/s</span>
                <input type="number" min={1} max={1_000_000} value={ratePerSecond} onChange={(e) => setRatePerSecond(Number(e.target.value))} required />
              </label>
            )}
            <label className="field">
              <span>{model === "open" ? "Max in flight" : "Workers"}</span>
              <input type="number" min={1} max={1000} value={concurrency} onChange={(e) => setConcurrency(Number(e.target.value))} required />
            </label>
            <label className="field">
              <span>Timeout ms</span>
              <input type="number" min={1} max={60_000} value={timeoutMs} onChange={(e) => setTimeoutMs(Number(e.target.value))} required />
            </label>
          </div>
        </fieldset>
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={running}>
            {running ? "Running…" : "Start load test"}
          </button>
          <button type="button" className="btn btn-bad" onClick={() => abort.current?.abort()} disabled={!running}>
            Cancel
          </button>
        </div>
      </form>

      <section className="panel lt-result" aria-label="Load test progress and result" data-testid="loadtest-result" data-state={run ? (run.error ? "error" : run.done ? "done" : "running") : "idle"}>
        {!run && <p className="muted">Start a load test to see its progress and result here.</p>}
        {run && (
          <>
            <div className="lt-head">
              <h2>{run.done ? (run.stoppedReason ? `Stopped: ${run.stoppedReason}` : "Result") : run.error ? "Failed" : "Running"}</h2>
              {run.id && <code className="muted">{run.id}</code>}
            </div>
            {run.error && <p className="error-text">{run.error}</p>}
            {!run.done && !run.error && (
              <div className="progress" role="progressbar" aria-label="Load test progress" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(progress * 100)}>
                <div className="progress-bar" style={{ width: `${Math.min(100, progress * 100)}%` }} />
              </div>
            )}
            {r && (
              <>
                <div className="kpis lt-kpis">
                  <Tile label="Throughput" value={`${rate(r.requestsPerSecond)}/s`} testid="lt-throughput" />
                  <Tile label="Requests" value={count(Number(r.requests))} testid="lt-requests" />
                  <Tile label="Success" value={Number(r.requests) ? pct((Number(r.successes) / Number(r.requests)) * 100, 2) : "–"} />
                  <Tile label="Failures" value={count(Number(r.failures))} />
                  <Tile label="Elapsed" value={`${r.elapsedSeconds.toFixed(1)} s`} />
                  {r.targetRate > 0 && <Tile label="Target rate" value={`${rate(r.targetRate)}/s · ${count(Number(r.dropped))} dropped`} />}
                </div>
                {run.rpsSeries.length > 1 && (
                  <Chart
                    title="Throughput"
                    times={run.rpsSeries.map((p) => p.t)}
                    height={80}
                    series={[{ label: "requests/s", values: run.rpsSeries.map((p) => p.rps), color: "var(--accent)", format: rate, area: true }]}
                  />
                )}
                {r.latency && <Latency title={r.targetRate > 0 ? "Latency (from intended send time)" : "Latency"} l={r.latency} />}
                {r.latencyUncorrected && r.targetRate > 0 && <Latency title="Latency (uncorrected, for comparison)" l={r.latencyUncorrected} />}
                {front && <FrontResult front={front} done={run.done || run.error !== null} />}
                <div className="lt-tables">
                  <table className="table">
                    <caption>Status codes</caption>
                    <thead>
                      <tr>
                        <th scope="col">Code</th>
                        <th scope="col">Count</th>
                      </tr>
                    </thead>
                    <tbody>
                      {r.statusCodes.map((c) => (
                        <tr key={c.code}>
                          <td>
                            <HttpStatus code={c.code} />
                          </td>
                          <td>{count(Number(c.count))}</td>
                        </tr>
                      ))}
                      {r.errors.map((e) => (
                        <tr key={e.kind}>
                          <td>
                            <HttpFailure text={e.kind} />
                          </td>
                          <td>{count(Number(e.count))}</td>
                        </tr>
                      ))}
                      {r.statusCodes.length + r.errors.length === 0 && (
                        <tr>
                          <td colSpan={2} className="muted">
                            none yet
                          </td>
                        </tr>
                      )}
                    </tbody>
                  </table>
                  {!front && (
                    <table className="table per-server">
                      <caption>Per server</caption>
                      <thead>
                        <tr>
                          <th scope="col">Server</th>
                          <th scope="col">Requests</th>
                          <th scope="col">Failures</th>
                          <th scope="col">p50</th>
                          <th scope="col">p99</th>
                          <th scope="col">Max</th>
                        </tr>
                      </thead>
                      <tbody>
                        {r.perServer.map((s) => (
                          <tr key={s.serverId}>
                            <td>server-{s.serverId}</td>
                            <td>{count(Number(s.requests))}</td>
                            <td className={Number(s.failures) ? "bad-text" : undefined}>{count(Number(s.failures))}</td>
                            <td>{ms(s.latency?.p50Ms ?? NaN)}</td>
                            <td>{ms(s.latency?.p99Ms ?? NaN)}</td>
                            <td>{ms(s.latency?.maxMs ?? NaN)}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                  )}
                </div>
              </>
            )}
          </>
        )}
        {past.length > 0 && (
          <details className="past">
            <summary>Previous runs ({past.length})</summary>
            <table className="table">
              <thead>
                <tr>
                  <th scope="col">Run</th>
                  <th scope="col">Requests</th>
                  <th scope="col">Throughput</th>
                  <th scope="col">p99</th>
                  <th scope="col">Ended</th>
                </tr>
              </thead>
              <tbody>
                {past.map((p) => (
                  <tr key={p.runId}>
                    <td>
                      <button type="button" className="link-btn" onClick={() => setRun({ id: p.runId, done: true, stoppedReason: p.stoppedReason, result: p.result ?? null, rpsSeries: [], error: null, totalRequests: 0, durationSeconds: 0 })}>
                        {p.runId}
                      </button>
                    </td>
                    <td>{count(Number(p.result?.requests ?? 0n))}</td>
                    <td>{rate(p.result?.requestsPerSecond ?? 0)}/s</td>
                    <td>{ms(p.result?.latency?.p99Ms ?? NaN)}</td>
                    <td>{p.stoppedReason || "completed"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        )}
      </section>
    </div>
  );
}

/**
 * A labelled input with its help or its error under it, tied to it by aria-describedby (and
 * kept out of the label, so that the input's name stays the label alone).
 */
function Field({ id, label, error, help, narrow, children }: { id: string; label: string; error?: string; help?: string; narrow?: boolean; children: ReactElement<InputHTMLAttributes<HTMLInputElement>> }) {
  const note = error ? `${id}-error` : help ? `${id}-help` : undefined;
  return (
    <div className={`field${narrow ? " narrow" : " grow"}`}>
      <label htmlFor={id}>{label}</label>
      {cloneElement(children, { id, "aria-invalid": error ? true : undefined, "aria-describedby": note })}
      {error ? (
        <small id={note} className="field-error">
          {error}
        </small>
      ) : (
        help && (
          <small id={note} className="field-help">
            {help}
          </small>
        )
      )}
    </div>
  );
}

function Tile({ label, value, testid }: { label: string; value: string; testid?: string }) {
  return (
    <div className="kpi">
      <div className="kpi-label">{label}</div>
      <div className="kpi-value" data-testid={testid}>
        {value}
      </div>
    </div>
  );
}

function Latency({ title, l }: { title: string; l: LatencySummary }) {
  const rows: [string, number][] = [
    ["p50", l.p50Ms],
    ["p90", l.p90Ms],
    ["p99", l.p99Ms],
    ["p99.9", l.p999Ms],
    ["max", l.maxMs],
  ];
  const top = Math.max(...rows.map(([, v]) => v), 0.001);
  return (
    <div className="latency" role="group" aria-label={title}>
      <h3>
        {title} <span className="muted">mean {ms(l.meanMs)}</span>
      </h3>
      {rows.map(([k, v]) => (
        <div key={k} className="lat-row">
          <span className="lat-k">{k}</span>
          <span className="lat-bar">
            <span style={{ width: `${Math.max(1, (Math.log1p(v) / Math.log1p(top)) * 100)}%` }} />
          </span>
          <span className="lat-v" data-testid={`lt-${k}`}>
            {ms(v)}
          </span>
        </div>
      ))}
    </div>
  );
}
