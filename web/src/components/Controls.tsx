// Farm-wide controls: scale the farm, broadcast one request to many servers, check health.
import { useState, type FormEvent } from "react";
import { useSnapshot, useToast } from "./context";
import { ms } from "./format";
import { HttpFailure, HttpStatus } from "./HttpStatus";
import { errorText, farmClient } from "../api/client";
import { parseIds } from "../state/ids";
import { statusName } from "../state/model";
import type { BroadcastReply, CheckHealthResponse } from "../gen/farm/v1/farm_pb";

export function Controls({ selected }: { selected: ReadonlySet<number> }) {
  return (
    <div className="page controls">
      <Scale />
      <Broadcast selected={selected} />
      <Health />
    </div>
  );
}

function Scale() {
  const { farm } = useSnapshot();
  const toast = useToast();
  const [target, setTarget] = useState<number | "">("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (target === "") return;
    setBusy(true);
    try {
      const r = await farmClient.scaleFarm({ servers: target });
      toast("ok", `The farm has ${r.servers} servers (${r.added.length} added, ${r.removed.length} removed)`);
    } catch (err) {
      toast("error", `Scaling failed: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="panel" onSubmit={submit} aria-labelledby="scale-h">
      <h2 id="scale-h">Scale the farm</h2>
      <p className="muted">
        Now {farm.ordered.length} servers. New servers take the next ids; scaling down removes the highest.
      </p>
      <div className="row">
        <label className="field">
          <span>Servers (0–1000)</span>
          <input
            type="number"
            min={0}
            max={1000}
            value={target}
            placeholder={String(farm.ordered.length)}
            onChange={(e) => setTarget(e.target.value === "" ? "" : Number(e.target.value))}
            required
          />
        </label>
        <button type="submit" className="btn btn-primary" disabled={busy || target === ""}>
          {busy ? "Scaling…" : "Scale"}
        </button>
      </div>
    </form>
  );
}

function Broadcast({ selected }: { selected: ReadonlySet<number> }) {
  const toast = useToast();
  const [targets, setTargets] = useState(selected.size ? [...selected].sort((a, b) => a - b).join(", ") : "");
  const [method, setMethod] = useState("GET");
  const [path, setPath] = useState("/health");
  const [body, setBody] = useState("");
  const [timeoutMs, setTimeoutMs] = useState(5000);
  const [busy, setBusy] = useState(false);
  const [replies, setReplies] = useState<BroadcastReply[] | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const parsed = parseIds(targets);
    if (parsed.error) return toast("error", `Targets: ${parsed.error}`);
    setBusy(true);
    try {
      const r = await farmClient.broadcast({ serverIds: parsed.ids, method, path, body, timeoutMs });
      setReplies(r.replies);
      const ok = r.replies.filter((x) => x.ok).length;
      toast(ok === r.replies.length ? "ok" : "error", `Broadcast: ${ok} of ${r.replies.length} answered`);
    } catch (err) {
      toast("error", `Broadcast failed: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="panel" onSubmit={submit} aria-labelledby="bc-h">
      <h2 id="bc-h">Broadcast</h2>
      <p className="muted">One HTTP request to many servers at once; every answer below.</p>
      <div className="row">
        <label className="field grow">
          <span>Servers (empty: all)</span>
          <input type="text" value={targets} onChange={(e) => setTargets(e.target.value)} placeholder="all, or 1-5, 8" />
        </label>
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
          <input type="text" value={path} onChange={(e) => setPath(e.target.value)} required pattern="/.*" maxLength={256} />
        </label>
        <label className="field narrow">
          <span>Timeout ms</span>
          <input type="number" min={1} max={30000} value={timeoutMs} onChange={(e) => setTimeoutMs(Number(e.target.value))} />
        </label>
      </div>
      {method !== "GET" && method !== "HEAD" && (
        <label className="field">
          <span>JSON body</span>
          <textarea rows={3} value={body} onChange={(e) => setBody(e.target.value)} placeholder='{"hello": "farm"}' maxLength={65536} />
        </label>
      )}
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Sending…" : "Send"}
        </button>
      </div>
      {replies && (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Server</th>
                <th scope="col">Status</th>
                <th scope="col">Latency</th>
                <th scope="col">Body</th>
              </tr>
            </thead>
            <tbody>
              {replies.map((r) => (
                <tr key={r.serverId}>
                  <td>server-{r.serverId}</td>
                  <td>
                    {r.ok ? <HttpStatus code={r.statusCode} /> : <HttpFailure text={r.error || "no answer"} />}
                  </td>
                  <td>{ms(r.latencyMs)}</td>
                  <td className="body-cell">
                    <code>
                      {r.body}
                      {r.bodyTruncated ? "…" : ""}
                    </code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </form>
  );
}

function Health() {
  const toast = useToast();
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<CheckHealthResponse | null>(null);
  const check = async () => {
    setBusy(true);
    try {
      setResult(await farmClient.checkHealth({ timeoutMs: 1000 }));
    } catch (err) {
      toast("error", `Health check failed: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };
  const bad = result?.servers.filter((s) => !s.probeOk) ?? [];
  return (
    <section className="panel" aria-labelledby="hc-h">
      <h2 id="hc-h">Health check</h2>
      <p className="muted">Probes every server's /health now.</p>
      <div className="form-actions">
        <button type="button" className="btn btn-primary" onClick={check} disabled={busy}>
          {busy ? "Probing…" : "Check health"}
        </button>
      </div>
      {result && (
        <>
          <p className="health-line">
            <b>
              {result.healthy} / {result.total}
            </b>{" "}
            healthy, checked in {ms(Number(result.durationUs) / 1000)}.
          </p>
          {bad.length > 0 && (
            <ul className="bad-list">
              {bad.slice(0, 50).map((s) => (
                <li key={s.serverId}>
                  <span className={`badge st-${statusName(s.status)}`}>
                    <span className="status-dot" aria-hidden="true" />
                    {statusName(s.status)}
                  </span>{" "}
                  {s.name}: {s.reason}
                </li>
              ))}
            </ul>
          )}
        </>
      )}
    </section>
  );
}
