import { IconLogo, IconMoon, IconSun } from "./icons";
import { useNow, useSnapshot, type Theme } from "./context";
import type { Connection } from "../state/watch";

const TABS = [
  { path: "servers", label: "Servers" },
  { path: "load-test", label: "Load test" },
  { path: "scenarios", label: "Scenarios" },
  { path: "runs", label: "Runs" },
  { path: "controls", label: "Controls" },
];

export function ConnectionPill({ connection }: { connection: Connection }) {
  const now = useNow(500);
  let text: string;
  let detail = "";
  switch (connection.state) {
    case "live":
      text = "Live";
      detail = "Streaming from the gateway";
      break;
    case "connecting":
      text = "Connecting…";
      break;
    case "reconnecting": {
      const wait = connection.retryAt ? Math.max(0, Math.ceil((connection.retryAt - now) / 1000)) : 0;
      text = connection.retryAt && wait > 0 ? `Reconnecting in ${wait}s` : "Reconnecting…";
      detail = connection.error ?? "";
      break;
    }
    case "stopped":
      text = "Stopped";
      break;
  }
  return (
    <div
      className={`conn conn-${connection.state}`}
      role="status"
      aria-live="polite"
      data-testid="connection"
      data-state={connection.state}
      title={detail}
    >
      <span className="conn-dot" aria-hidden="true" />
      <span className="conn-text">{text}</span>
      {connection.state === "reconnecting" && connection.attempt > 0 && <span className="conn-attempt">attempt {connection.attempt}</span>}
    </div>
  );
}

export function Header({ route, theme, toggleTheme }: { route: string; theme: Theme; toggleTheme: () => void }) {
  const { connection, farm } = useSnapshot();
  return (
    <header className="topbar">
      <div className="topbar-inner">
        <a className="brand" href="#/servers" aria-label="farm: servers">
          <IconLogo />
          <span>farm</span>
          <span className="brand-count" title="servers in the farm">
            {farm.ordered.length}
          </span>
        </a>
        <nav className="tabs" aria-label="Sections">
          {TABS.map((t) => (
            <a key={t.path} href={`#/${t.path}`} className="tab" aria-current={route === t.path ? "page" : undefined}>
              {t.label}
            </a>
          ))}
        </nav>
        <div className="topbar-right">
          <ConnectionPill connection={connection} />
          <button
            type="button"
            className="icon-btn"
            onClick={toggleTheme}
            aria-label={theme === "dark" ? "Switch to the light theme" : "Switch to the dark theme"}
            title={theme === "dark" ? "Light theme" : "Dark theme"}
          >
            {theme === "dark" ? <IconSun /> : <IconMoon />}
          </button>
        </div>
      </div>
    </header>
  );
}
