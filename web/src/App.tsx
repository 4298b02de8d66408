import { useCallback, useMemo, useState } from "react";
import { tokenPrompt } from "./api/client";
import { Controls } from "./components/Controls";
import { Header } from "./components/Header";
import { LoadTest } from "./components/LoadTest";
import { Runs } from "./components/Runs";
import { Scenarios } from "./components/Scenarios";
import { Overview } from "./components/Overview";
import { ServerDetail } from "./components/ServerDetail";
import { ServerGrid } from "./components/ServerGrid";
import { TokenDialog } from "./components/TokenDialog";
import { Toolbar } from "./components/Toolbar";
import { navigate, useHashRoute, useSnapshot, useTheme } from "./components/context";
import type { Status } from "./state/model";
import { applyQuery, DEFAULT_QUERY, type GridQuery } from "./state/query";

/** `#/runs/lt-1/lt-2` → the two runs to compare (the part that is not a run id is left as it is). */
function chosenRuns(route: readonly string[]): string[] {
  const ids = route.slice(1, 3).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return [...new Set(ids)];
}

export function App() {
  const route = useHashRoute();
  const [theme, toggleTheme] = useTheme();
  const { farm } = useSnapshot();
  const [query, setQuery] = useState<GridQuery>(DEFAULT_QUERY);
  const [selected, setSelected] = useState<ReadonlySet<number>>(new Set());
  const section = route[0] === "load-test" || route[0] === "scenarios" || route[0] === "runs" || route[0] === "controls" ? route[0] : "servers";
  const detailId = section === "servers" && route[1] ? Number(route[1]) : null;

  const shown = useMemo(() => applyQuery(farm.ordered, query), [farm.ordered, query]);
  // Servers that left the farm leave the selection too.
  const liveSelection = useMemo(() => {
    const kept = [...selected].filter((id) => farm.servers.has(id));
    return kept.length === selected.size ? selected : new Set(kept);
  }, [selected, farm.servers]);

  const toggle = useCallback((id: number) => {
    setSelected((s) => {
      const next = new Set(s);
      if (!next.delete(id)) next.add(id);
      return next;
    });
  }, []);
  const open = useCallback((id: number) => navigate(`servers/${id}`), []);
  const close = useCallback(() => navigate("servers"), []);
  const toggleStatus = useCallback(
    (s: Status) =>
      setQuery((q) => {
        const statuses = new Set(q.statuses);
        if (!statuses.delete(s)) statuses.add(s);
        return { ...q, statuses };
      }),
    [],
  );

  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <Header route={section} theme={theme} toggleTheme={toggleTheme} />
      <main id="main" className="main">
        {section === "servers" && (
          <>
            <Overview statuses={query.statuses} toggleStatus={toggleStatus} />
            <Toolbar
              query={query}
              setQuery={setQuery}
              shown={shown.length}
              total={farm.ordered.length}
              selected={liveSelection}
              selectShown={() => setSelected(new Set(shown.map((s) => s.id)))}
              clearSelection={() => setSelected(new Set())}
            />
            {farm.ordered.length === 0 && !farm.synced ? (
              <div className="grid-empty">Waiting for the farm…</div>
            ) : (
              <ServerGrid servers={shown} selected={liveSelection} toggle={toggle} open={open} />
            )}
            {detailId !== null && Number.isInteger(detailId) && <ServerDetail id={detailId} close={close} />}
          </>
        )}
        {section === "load-test" && <LoadTest selected={liveSelection} />}
        {section === "scenarios" && <Scenarios runId={route[1] ? decodeURIComponent(route[1]) : null} />}
        {section === "runs" && <Runs chosen={chosenRuns(route)} />}
        {section === "controls" && <Controls selected={liveSelection} />}
      </main>
      <footer className="footer">
        farm dashboard · pushed over grpc-web · <a href="/docs">API docs</a> · <a href="/metrics">Prometheus metrics</a>
      </footer>
      <TokenDialog prompt={tokenPrompt} />
    </>
  );
}
