// Scenario runs: the one shared poll of ListScenarioRuns (the scenario view and the bands on
// the farm's and a server's charts read it; it runs only while one of them is shown), and
// the verbs. A controller without scenarios answers "unimplemented": then the poll slows
// to once a minute and the charts simply have no bands.
import { Code, ConnectError } from "@connectrpc/connect";
import { useMemo, useSyncExternalStore } from "react";
import { errorText, farmClient } from "./client";
import { farmBands, RunsPoller, type Band, type RunsSnapshot } from "../state/scenario";

export const scenarioRuns = new RunsPoller({
  list: async (signal) => (await farmClient.listScenarioRuns({}, { signal })).runs,
  isUnsupported: (e) => e instanceof ConnectError && e.code === Code.Unimplemented,
  describe: errorText,
  everyMs: 2000,
});

/** The polled list of scenario runs; polling while any component uses this. */
export function useScenarioRuns(): RunsSnapshot {
  return useSyncExternalStore(scenarioRuns.subscribe, scenarioRuns.getSnapshot);
}

const NO_BANDS: Band[] = [];

/**
 * The scenario bands for the farm's charts (`serverId` null) or for one server's; the same
 * empty array while there are none, so that a poll without runs redraws no chart.
 */
export function useScenarioBands(serverId: number | null = null): Band[] {
  const { runs } = useScenarioRuns();
  return useMemo(() => {
    const bands = farmBands(runs, serverId);
    return bands.length ? bands : NO_BANDS;
  }, [runs, serverId]);
}
