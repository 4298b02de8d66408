// Scenarios in the dashboard, in headless Chromium against a real `farm up` of 4 servers: a
// file with problems is refused with their lines and fields and nothing starts; a short
// scenario (8 s of open-model load at 50 req/s in two phases, a latency fault on server 2 from
// 2 s for 3 s, one SLO that holds and one that cannot) is pasted and started. While it runs,
// its phases and its fault are drawn as bands on the scenario's charts and on the farm's; when
// it ends, the state is FAILED with one verdict passed and one failed, and a server's charts
// show only the faults that hit it. A second run is stopped from the page. Run with
// `npm run e2e` after `npm run build` and `cargo build -p farm` (the binary embeds web/dist;
// or set FARM_DASHBOARD_DIR=web/dist). Fails, never skips, when Chromium is missing.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launch } from "./browser.mjs";
import { assertCurrentBuild, farmUp } from "./farm.mjs";

const SERVERS = 4;

const SCENARIO = `version: 1
name: e2e-slow-one
seed: 7
steady_state:
  - { check: all_healthy, within: 10s }
load:
  concurrency: 16
  phases:
    - { name: warm, for: 4s, rate: 50 }
    - { name: hold, for: 4s, rate: 50 }
faults:
  - { id: slow2, kind: latency, servers: [2], at: 2s, for: 3s, delay: 100ms }
slo:
  - { metric: error_rate, lt: 50% }
  - { metric: latency.p50, lt: 0.001ms }
`;

// Line 5: a phase's length that is not a duration; line 7: a misspelt key.
const BROKEN = `version: 1
name: e2e-broken
load:
  phases:
    - { name: warm, for: soon, rate: 50 }
faults:
  - { id: slow2, kind: latency, servers: [2], at: 1s, delya: 100ms }
`;

const LONG = `version: 1
name: e2e-stopped
load:
  phases:
    - { name: steady, for: 60s, rate: 20 }
faults:
  - { id: slow3, kind: latency, servers: [3], at: 1s, delay: 10ms }
`;

/** The bands drawn on a chart (by its data-testid): [kind, label, live] in document order. */
function bands(page, testid) {
  return page.evaluate(
    (id) => [...document.querySelectorAll(`[data-testid="${id}"] [data-band]`)].map((g) => [g.dataset.band, g.dataset.label, g.dataset.live === "true"]),
    testid,
  );
}

/** Waits until the chart `testid` draws the two phases and the fault, live or not. */
async function waitForBands(page, testid, live, timeout) {
  await page.waitForFunction(
    ([id, live]) => {
      const drawn = [...document.querySelectorAll(`[data-testid="${id}"] [data-band]`)].filter((g) => g.dataset.run && (g.dataset.live === "true") === live);
      const labels = drawn.map((g) => `${g.dataset.band}:${g.dataset.label}`);
      return ["phase:warm", "phase:hold", "fault:slow2 · latency"].every((want) => labels.includes(want));
    },
    [testid, live],
    { timeout, polling: 100 },
  );
}

describe("scenarios in the dashboard against farm up", () => {
  let farm;
  let browser;
  let page;
  const errors = [];

  before(async () => {
    browser = await launch();
    farm = await farmUp(SERVERS);
    await assertCurrentBuild(farm.url);
    page = await browser.context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${farm.url}/`);
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 15_000 });
    await page.waitForFunction((n) => document.querySelectorAll('[data-status="healthy"][data-testid^="server-card-"]').length === n, SERVERS, { timeout: 15_000 });
    await page.getByRole("link", { name: "Scenarios", exact: true }).click();
    await page.getByRole("heading", { name: "Runs" }).waitFor({ timeout: 5000 });
  });

  after(async () => {
    await browser?.close();
    await farm?.stop();
  });

  it("lists a file's problems with their lines and fields, and starts nothing", async () => {
    const form = page.getByRole("form", { name: "Start a scenario" });
    await form.getByLabel("Scenario file (YAML)").fill(BROKEN);
    await form.getByRole("button", { name: "Start scenario" }).click();
    const problems = page.getByTestId("scenario-problem");
    await problems.first().waitFor({ timeout: 5000 });
    const found = await problems.evaluateAll((items) => items.map((li) => [Number(li.dataset.line), li.dataset.field]));
    console.log(`# problems: ${JSON.stringify(found)}`);
    assert.deepEqual(found, [
      [5, "load.phases[0].for"],
      [7, "faults[0].delya"],
      [7, "faults[0].delay"],
    ]);
    assert.match(await problems.nth(1).textContent(), /did you mean `delay`\?/);
    assert.equal(await form.getByLabel("Scenario file (YAML)").getAttribute("aria-invalid"), "true");
    // "line 7" puts the caret on that line.
    await form.getByRole("button", { name: "Go to line 7, faults[0].delya" }).click();
    const caret = await form.getByLabel("Scenario file (YAML)").evaluate((t) => t.value.slice(t.selectionStart, t.selectionEnd));
    assert.match(caret, /delya: 100ms/);
    // Nothing started: the controller lists no run.
    await page.getByText("No scenario has run yet.").waitFor({ timeout: 5000 });
    assert.equal(await page.getByTestId("scenario-detail").getAttribute("data-state"), "none");
    assert.deepEqual(errors, []);
  });

  it("runs a scenario live: phases and fault as bands on its charts and on the farm's, then FAILED with one verdict passed and one failed", async () => {
    const form = page.getByRole("form", { name: "Start a scenario" });
    await form.getByLabel("Scenario file (YAML)").fill(SCENARIO);
    const started = Date.now();
    await form.getByRole("button", { name: "Start scenario" }).click();
    const detail = page.getByTestId("scenario-detail");
    await page.waitForFunction(() => document.querySelector('[data-testid="scenario-detail"]')?.getAttribute("data-state") === "running", null, { timeout: 10_000, polling: 50 });
    // The last file's problems went with the check that let this one start.
    assert.equal(await page.getByTestId("scenario-problem").count(), 0);
    const runId = await detail.getAttribute("data-run");
    assert.match(runId, /^sc-\d+$/);
    assert.match(await page.evaluate(() => location.hash), new RegExp(`^#/scenarios/${runId}$`));
    await page.getByTestId(`scenario-row-${runId}`).and(page.locator('[data-state="running"]')).waitFor({ timeout: 5000 });
    assert.equal(await page.getByRole("button", { name: `Stop e2e-slow-one (${runId})` }).count(), 1);

    // While it runs: the fault (applied at 2 s) joins the phases on each of the run's charts.
    await waitForBands(page, "scenario-chart-throughput", true, 10_000);
    for (const chart of ["scenario-chart-errors", "scenario-chart-latency"]) await waitForBands(page, chart, true, 2000);
    const onScenario = await bands(page, "scenario-chart-throughput");
    console.log(`# scenario chart at ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(onScenario)}`);
    assert.deepEqual(onScenario.filter(([kind]) => kind === "fault").map(([, label]) => label), ["slow2 · latency"]);
    assert.match(await page.getByTestId("scenario-chart-throughput").getByRole("img").getAttribute("aria-label"), /phases: warm, hold; faults: slow2 · latency \(server 2\)/);
    assert.equal(await page.getByTestId("scenario-state").getAttribute("data-state"), "running");
    // Verdicts come as the run goes, provisional.
    const provisional = await page.getByTestId("verdict-row").evaluateAll((rows) => rows.map((r) => r.dataset.final));
    assert.ok(provisional.every((f) => f === "false"), `provisional verdicts while running: ${provisional}`);

    // The farm's charts draw the same run's bands (from the polled list) while it runs: the
    // second phase starts at 4 s and the load ends at 8 s.
    await page.getByRole("link", { name: "Servers", exact: true }).click();
    await waitForBands(page, "farm-chart-rps", true, 8000);
    const onFarm = await bands(page, "farm-chart-rps");
    console.log(`# farm chart at ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(onFarm)}`);
    await waitForBands(page, "farm-chart-cpu", true, 2000);

    // When it ends: FAILED, error_rate < 50% passed, latency.p50 < 0.001ms failed, both final.
    await page.getByRole("link", { name: "Scenarios", exact: true }).click();
    await page.waitForFunction(() => document.querySelector('[data-testid="scenario-state"]')?.getAttribute("data-state") === "failed", null, { timeout: 30_000, polling: 100 });
    console.log(`# ended after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(await detail.getAttribute("data-run"), runId);
    // The file is still there after leaving the section.
    assert.equal(await page.getByLabel("Scenario file (YAML)").inputValue(), SCENARIO);
    assert.equal((await page.getByTestId("scenario-state").textContent()).toUpperCase(), "FAILED");
    const verdicts = await page.getByTestId("verdict-row").evaluateAll((rows) =>
      rows.map((r) => ({ assertion: r.querySelector("code")?.textContent, passed: r.dataset.passed, final: r.dataset.final, status: r.dataset.status })),
    );
    console.log(`# verdicts: ${JSON.stringify(verdicts)}`);
    assert.deepEqual(
      verdicts.map((v) => [v.passed, v.final, v.status]),
      [
        ["true", "true", "passed"],
        ["false", "true", "failed"],
      ],
    );
    assert.match(verdicts[0].assertion, /^error_rate < 50%/);
    assert.match(verdicts[1].assertion, /^latency\.p50 < 0\.001ms/);
    const failedRow = page.getByTestId("verdict-row").nth(1);
    assert.match(await failedRow.textContent(), /✗ failed/);
    assert.match(await failedRow.getByRole("cell").nth(3).textContent(), /^0\.001 ms$/);
    assert.equal(await page.getByText("provisional", { exact: true }).count(), 0);
    assert.equal(await page.getByTestId("scenario-verdict-counts").textContent(), "1 passed · 1 failed");
    // The steady state held before and after; the fault ran its 3 s.
    assert.deepEqual(await page.getByTestId("check-row").evaluateAll((rows) => rows.map((r) => r.dataset.passed)), ["true", "true"]);
    assert.match(await page.getByTestId("scenario-fault-slow2").textContent(), /latency2at 2 s for 3 s2(\.\d+)? s – 5(\.\d+)? s/);
    await page.getByTestId(`scenario-row-${runId}`).and(page.locator('[data-state="failed"]')).waitFor({ timeout: 5000 });
    assert.equal(await page.getByTestId(`scenario-row-${runId}`).getByLabel("1 passed, 1 failed").count(), 1);
    // Finished: the bands stay, no longer live; the charts have the run's seconds.
    await waitForBands(page, "scenario-chart-throughput", false, 2000);
    assert.match(await page.getByTestId("scenario-chart-throughput").getByRole("img").getAttribute("aria-label"), /^Throughput \(requests\/s\): requests\/s \d/);

    // A server's charts: every phase, and the fault only on the server it hit.
    await page.getByRole("link", { name: "Servers", exact: true }).click();
    for (const [id, faults] of [
      [2, ["slow2 · latency"]],
      [1, []],
    ]) {
      await page.getByRole("button", { name: `server-${id}: open details` }).click();
      const dialog = page.getByRole("dialog");
      await dialog.waitFor();
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="server-chart-rps"] [data-band="phase"]').length === 2, null, { timeout: 10_000, polling: 100 });
      const drawn = await bands(page, "server-chart-rps");
      assert.deepEqual(drawn.filter(([kind]) => kind === "fault").map(([, label]) => label), faults, `server ${id}'s faults`);
      await dialog.getByRole("button", { name: "Close details" }).click();
      await dialog.waitFor({ state: "detached" });
    }
    assert.deepEqual(errors, []);
  });

  it("stops a running scenario from the page: ABORTED, its reason shown", async () => {
    await page.getByRole("link", { name: "Scenarios", exact: true }).click();
    const form = page.getByRole("form", { name: "Start a scenario" });
    await form.getByLabel("Scenario file (YAML)").fill(LONG);
    await form.getByRole("button", { name: "Start scenario" }).click();
    await page.waitForFunction(
      () => {
        const d = document.querySelector('[data-testid="scenario-detail"]');
        return d?.getAttribute("data-state") === "running" && d.querySelector('[data-band="phase"]') !== null;
      },
      null,
      { timeout: 10_000, polling: 50 },
    );
    await page.getByRole("button", { name: "Stop scenario" }).click();
    await page.waitForFunction(() => document.querySelector('[data-testid="scenario-state"]')?.getAttribute("data-state") === "aborted", null, { timeout: 15_000, polling: 100 });
    const reason = await page.getByTestId("scenario-reason").textContent();
    console.log(`# stopped: ${reason}`);
    assert.ok(reason.length > 0);
    // The stopped run's phase ends where its load stopped, well short of its 60 s.
    const [box] = await page.getByTestId("scenario-chart-throughput").locator('[data-band="phase"] rect').evaluateAll((rects) => rects.map((r) => Number(r.getAttribute("width"))));
    assert.ok(box < 300, `the phase's band stops early (${box} of 600)`);
    assert.equal(await page.getByRole("button", { name: "Stop scenario" }).count(), 0);
    assert.deepEqual(errors, []);
  });
});
