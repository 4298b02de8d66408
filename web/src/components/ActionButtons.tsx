// The actions on one server or on a selection of them: Start, Stop and Restart as buttons,
// the chaos actions in a menu. The server's detail and the selection toolbar both use it.
import type { ActionName } from "../api/actions";
import { IconPlay, IconRestart, IconStop } from "./icons";

export function ActionButtons({
  onAction,
  disabled,
  subject,
  coloured = false,
}: {
  onAction: (action: ActionName) => void;
  disabled: boolean;
  /** What the actions apply to, for the menu's label ("server-3", "the selection"). */
  subject: string;
  /** Start and Stop in their own colours. */
  coloured?: boolean;
}) {
  return (
    <>
      <button type="button" className={coloured ? "btn btn-ok" : "btn"} onClick={() => onAction("start")} disabled={disabled}>
        <IconPlay /> Start
      </button>
      <button type="button" className={coloured ? "btn btn-bad" : "btn"} onClick={() => onAction("stop")} disabled={disabled}>
        <IconStop /> Stop
      </button>
      <button type="button" className="btn" onClick={() => onAction("restart")} disabled={disabled}>
        <IconRestart /> Restart
      </button>
      <select
        className="btn"
        aria-label={`Chaos action on ${subject}`}
        value=""
        disabled={disabled}
        onChange={(e) => {
          if (e.target.value) onAction(e.target.value as ActionName);
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
