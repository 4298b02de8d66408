// The actions on one server or on a selection of them: Start, Stop and Restart as buttons,
// the chaos actions in a menu; each runs on the servers and says how it went in a toast, and
// all are disabled while one runs. The server's detail and the selection toolbar both use it.
import { useState } from "react";
import { capital, describeAction, serverAction, type ActionName } from "../api/actions";
import { errorText } from "../api/client";
import { useToast } from "./context";
import { IconPlay, IconRestart, IconStop } from "./icons";

export function ActionButtons({
  ids,
  subject,
  coloured = false,
  capitalised = false,
}: {
  /** The servers the actions apply to. */
  ids: number[];
  /** What the actions apply to, for the menu's label ("server-3", "the selection"). */
  subject: string;
  /** Start and Stop in their own colours. */
  coloured?: boolean;
  /** A failure's toast begins with a capital ("Stop failed" rather than "stop failed"). */
  capitalised?: boolean;
}) {
  const toast = useToast();
  const [busy, setBusy] = useState<ActionName | null>(null);
  const disabled = busy !== null;
  const onAction = async (action: ActionName) => {
    setBusy(action);
    try {
      const summary = await serverAction(ids, action);
      toast(summary.failed.length ? "error" : "ok", describeAction(action, ids, summary));
    } catch (e) {
      toast("error", `${capitalised ? capital(action) : action} failed: ${errorText(e)}`);
    } finally {
      setBusy(null);
    }
  };
  return (
    <>
      <button type="button" className={coloured ? "btn btn-ok" : "btn"} onClick={() => void onAction("start")} disabled={disabled}>
        <IconPlay /> Start
      </button>
      <button type="button" className={coloured ? "btn btn-bad" : "btn"} onClick={() => void onAction("stop")} disabled={disabled}>
        <IconStop /> Stop
      </button>
      <button type="button" className="btn" onClick={() => void onAction("restart")} disabled={disabled}>
        <IconRestart /> Restart
      </button>
      <select
        className="btn"
        aria-label={`Chaos action on ${subject}`}
        value=""
        disabled={disabled}
        onChange={(e) => {
          if (e.target.value) void onAction(e.target.value as ActionName);
        }}
      >
        <option value="">Chaos…</option>
        <option value="kill">Kill (SIGKILL)</option>
        <option value="pause">Pause</option>
        <option value="unpause">Unpause</option>
      </select>
    </>
  );
}
