// Faults on one server or on the selection: the active ones as chips, each with its own
// clear, a button that clears every kind, and a compact form that sets one fault. Each call
// says how it went in a toast, as the other actions do, and all are disabled while one runs.
// The Watch stream brings the servers' new faults back; nothing is kept here.
import { useId, useState, type FormEvent } from "react";
import { describeOutcome, type ActionSummary } from "../api/actions";
import { errorText } from "../api/client";
import {
  clearFaults,
  DEFAULT_FAULT_FORM,
  FAULT_KINDS,
  faultFromForm,
  faultName,
  setFaults,
  type FaultFormValues,
  type FaultKindName,
  type FaultProfile,
} from "../api/faults";
import type { ServerView } from "../state/model";
import { useToast } from "./context";

const KIND_LABELS: Record<FaultKindName, string> = {
  latency: "Latency",
  abort: "Abort (error status)",
  hang: "Hang",
  throughput: "Slow bodies (throughput)",
  connection: "Drop the connection",
  rate_limit: "Rate limit",
  health: "Failing /health",
  readiness: "Drain (/ready 503)",
  partition: "Partition (docker only)",
};

/** One chip: a kind of fault and what to say about it. */
export interface FaultChip {
  kind: FaultKindName;
  label: string;
}

/** The kinds of fault the `servers` have, each with how many of them have it. */
export function selectionChips(servers: readonly ServerView[]): FaultChip[] {
  const counts = new Map<FaultKindName, number>();
  for (const s of servers) for (const f of s.faults) counts.set(f.kind, (counts.get(f.kind) ?? 0) + 1);
  return FAULT_KINDS.filter((k) => counts.has(k)).map((kind) => ({
    kind,
    label: `${kind.replace("_", " ")} · ${counts.get(kind)} of ${servers.length}`,
  }));
}

export function FaultPanel({
  ids,
  subject,
  chips,
}: {
  /** The servers the calls apply to. */
  ids: number[];
  /** What they apply to, for labels ("server-3", "the selection"). */
  subject: string;
  /** The active faults to show. */
  chips: FaultChip[];
}) {
  const toast = useToast();
  const headingId = useId();
  const [busy, setBusy] = useState(false);
  const run = async (what: string, call: () => Promise<ActionSummary>) => {
    const targets = ids;
    setBusy(true);
    try {
      const summary = await call();
      toast(summary.failed.length ? "error" : "ok", describeOutcome(what, targets, summary));
    } catch (e) {
      toast("error", `${what} failed: ${errorText(e)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="faults" aria-labelledby={headingId} data-testid="faults">
      <div className="faults-head">
        <h3 id={headingId}>Faults</h3>
        {chips.length === 0 ? (
          <span className="muted">None.</span>
        ) : (
          <ul className="fault-chips" aria-label={`Faults on ${subject}`}>
            {chips.map((c) => (
              <li key={c.kind} className="fault-chip" data-kind={c.kind}>
                <span>{c.label}</span>
                <button
                  type="button"
                  className="chip-x"
                  aria-label={`Clear the ${faultName(c.kind)} on ${subject}`}
                  title={`Clear the ${faultName(c.kind)}`}
                  disabled={busy}
                  onClick={() => void run(`Clear ${faultName(c.kind)}`, () => clearFaults(ids, [c.kind]))}
                >
                  ×
                </button>
              </li>
            ))}
          </ul>
        )}
        <button
          type="button"
          className="btn btn-ghost faults-clear"
          disabled={busy || chips.length === 0}
          onClick={() => void run("Clear faults", () => clearFaults(ids))}
        >
          Clear faults
        </button>
      </div>
      <FaultForm subject={subject} busy={busy} onSet={(what, profile) => void run(what, () => setFaults(ids, profile))} onInvalid={(text) => toast("error", text)} />
    </section>
  );
}

function FaultForm({
  subject,
  busy,
  onSet,
  onInvalid,
}: {
  subject: string;
  busy: boolean;
  onSet: (what: string, profile: FaultProfile) => void;
  onInvalid: (text: string) => void;
}) {
  const [v, setV] = useState<FaultFormValues>(DEFAULT_FAULT_FORM);
  const kindId = useId();
  const set = (k: keyof FaultFormValues) => (e: { target: { value: string } }) => setV((old) => ({ ...old, [k]: e.target.value }));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const what = `Set ${faultName(v.kind)}`;
    const built = faultFromForm(v);
    if ("error" in built) onInvalid(`${what}: ${built.error}`);
    else onSet(what, built.profile);
  };
  const number = (k: keyof FaultFormValues, label: string, attrs: { min?: number; max?: number; step?: number | "any"; placeholder?: string } = {}) => (
    <label className="field narrow">
      <span>{label}</span>
      <input type="number" name={k} inputMode="decimal" value={v[k]} onChange={set(k)} {...attrs} />
    </label>
  );
  // The browser's own checks are off: the controller checks every bound and names the field
  // it refuses, and its message is the one to read (min and max still guide the spinners).
  return (
    <form className="fault-form" onSubmit={submit} noValidate aria-label={`Set a fault on ${subject}`}>
      <div className="row">
        {/* Not wrapped in its label: the label's name would take in the chosen option's. */}
        <div className="field kind">
          <label htmlFor={kindId}>Fault</label>
          <select id={kindId} name="kind" value={v.kind} onChange={set("kind")}>
            {FAULT_KINDS.map((k) => (
              <option key={k} value={k}>
                {KIND_LABELS[k]}
              </option>
            ))}
          </select>
        </div>
        {v.kind === "latency" && (
          <>
            {number("delayMs", "Delay ms", { min: 0, max: 60_000, step: 10 })}
            {number("jitterMs", "Jitter ms", { min: 0, max: 60_000, step: 10 })}
          </>
        )}
        {(v.kind === "abort" || v.kind === "health") && number("status", "Status", { min: 400, max: 599 })}
        {v.kind === "hang" && number("maxMs", "Hold at most ms", { min: 1, max: 600_000, step: 1000, placeholder: "60000" })}
        {v.kind === "throughput" && number("bytesPerSecond", "Bytes/s", { min: 1, step: 100 })}
        {v.kind === "connection" && (
          <label className="field narrow">
            <span>Mode</span>
            <select name="mode" value={v.mode} onChange={set("mode")}>
              <option value="reset">reset</option>
              <option value="close">close</option>
            </select>
          </label>
        )}
        {v.kind === "rate_limit" && number("requestsPerSecond", "Requests/s", { min: 1, step: 10 })}
        {v.kind !== "partition" && number("percent", "Percent", { min: 0, max: 100, step: "any", placeholder: "100" })}
        {number("durationSeconds", "Duration s", { min: 0, max: 86_400, step: 10, placeholder: "no limit" })}
        <button type="submit" className="btn btn-primary" disabled={busy}>
          Set fault
        </button>
      </div>
    </form>
  );
}
