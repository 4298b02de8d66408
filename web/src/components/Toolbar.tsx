// Above the grid: search, sort, and the bulk actions on the selection, its faults among them.
import { useId, useState } from "react";
import { ActionButtons } from "./ActionButtons";
import { useSnapshot } from "./context";
import { FaultPanel, selectionChips } from "./Faults";
import { IconFault, IconSearch } from "./icons";
import { SORT_KEYS, type GridQuery, type SortKey } from "../state/query";

const SORT_LABELS: Record<SortKey, string> = { id: "Id", name: "Name", status: "Status (worst first)", cpu: "CPU", memory: "Memory", rps: "Requests/s" };

interface Props {
  query: GridQuery;
  setQuery: (q: GridQuery) => void;
  shown: number;
  total: number;
  selected: ReadonlySet<number>;
  selectShown: () => void;
  clearSelection: () => void;
}

export function Toolbar({ query, setQuery, shown, total, selected, selectShown, clearSelection }: Props) {
  const ids = [...selected].sort((a, b) => a - b);
  return (
    <div className="toolbar">
      <div className="toolbar-row">
        <label className="search">
          <IconSearch />
          <span className="sr-only">Filter servers</span>
          <input
            type="search"
            placeholder="Filter by name, address, status…"
            value={query.text}
            onChange={(e) => setQuery({ ...query, text: e.target.value })}
          />
        </label>
        <label className="sort">
          <span className="sr-only">Sort by</span>
          <select value={query.sort} onChange={(e) => setQuery({ ...query, sort: e.target.value as SortKey })}>
            {SORT_KEYS.map((k) => (
              <option key={k} value={k}>
                Sort: {SORT_LABELS[k]}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
          className="btn btn-ghost"
          onClick={() => setQuery({ ...query, desc: !query.desc })}
          aria-label={query.desc ? "Descending order; switch to ascending" : "Ascending order; switch to descending"}
          title="Order"
        >
          {query.desc ? "↓ desc" : "↑ asc"}
        </button>
        <button type="button" className="btn btn-ghost" onClick={selectShown} disabled={shown === 0}>
          Select shown
        </button>
        <span className="toolbar-count" aria-live="polite">
          {shown === total ? `${total} servers` : `${shown} of ${total} servers`}
        </span>
      </div>
      {selected.size > 0 && <Selection ids={ids} clearSelection={clearSelection} />}
    </div>
  );
}

/** The selection's row: its actions, and its faults in a panel that opens below. */
function Selection({ ids, clearSelection }: { ids: number[]; clearSelection: () => void }) {
  const [faultsOpen, setFaultsOpen] = useState(false);
  const panelId = useId();
  return (
    <>
      <div className="toolbar-row selection-row" role="group" aria-label="Selection">
        <button type="button" className="btn btn-ghost" onClick={clearSelection}>
          Clear
        </button>
        <span className="sel-count" data-testid="selection-count">
          {ids.length} selected
        </span>
        <div className="bulk">
          <ActionButtons ids={ids} subject="the selection" />
          <button type="button" className="btn" aria-expanded={faultsOpen} aria-controls={panelId} onClick={() => setFaultsOpen((o) => !o)}>
            <IconFault /> Faults
          </button>
        </div>
      </div>
      {faultsOpen && (
        <div id={panelId} className="selection-faults" data-testid="selection-faults">
          <SelectionFaults ids={ids} />
        </div>
      )}
    </>
  );
}

function SelectionFaults({ ids }: { ids: number[] }) {
  const { farm } = useSnapshot();
  const servers = ids.flatMap((id) => farm.servers.get(id) ?? []);
  return <FaultPanel ids={ids} subject="the selection" chips={selectionChips(servers)} />;
}
