// The farm's history in the dashboard, in headless Chromium against a real `farm up` of 3
// servers with a history file of its own: two short open-model load tests through REST
// (200 requests at 100 req/s, then at 200 req/s) before the page opens. The overview's
// charts start with the farm's seconds from before the page was opened (GetMetricHistory),
// the live points going on from them. In the Runs tab both runs are listed (newest first,
// finished), both are chosen, and the comparison shows their p99 and throughput side by side
// with the difference (the second about twice the first's throughput), their timelines
// overlaid from their starts, and the events list the runs' ends. Then the farm is killed
// during a third load test and started again on the same history: a new page (another
// origin, nothing stored) still charts the seconds before the restart, and the third run
// is listed as interrupted. Run with `npm run e2e`
// after `npm run build` and `cargo build -p farm` (the binary embeds web/dist; or set
// FARM_DASHBOARD_DIR=web/dist). Fails, never skips, when Chromium is missing.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { launch } from "./browser.mjs";
import { assertCurrentBuild, farmUp } from "./farm.mjs";

const SERVERS = 3;

describe("runs and history in the dashboard against farm up", () => {
  let farm;
  let browser;
  let page;
  let dir;
  const errors = [];
  const runs = [];
  let openedAt = 0;
  let history;

  before(async () => {
    browser = await launch();
    dir = mkdtempSync(join(tmpdir(), "farm-e2e-history-"));
    history = { FARM_HISTORY: join(dir, "history.sqlite") };
    farm = await farmUp(SERVERS, history);
    await assertCurrentBuild(farm.url);
    // Two load tests, one after the other, each answered with its final result.
    for (const rate of [100, 200]) {
      const started = Date.now();
      const r = await fetch(`${farm.url}/api/load-test`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ total_requests: 200, rate_per_second: rate }),
      });
      const body = await r.json();
      assert.equal(r.status, 200, JSON.stringify(body));
      assert.equal(body.done, true);
      assert.equal(body.result.requests, 200);
      console.log(`# ${body.id} at ${rate} req/s: ${body.result.requests_per_second.toFixed(1)} req/s, p99 ${body.result.latency.p99_ms} ms, ${Date.now() - started} ms`);
      runs.push(body);
    }
    // The history is written once a second from the agents' samples: wait until it holds three
    // points and the load tests' traffic, and a second more, so that the page opens after them.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await fetch(`${farm.url}/api/metrics/history?server_id=0`);
      const points = (await r.json()).points ?? [];
      if (points.length >= 3 && points.some((p) => p.requests_per_second > 0)) break;
      assert.ok(Date.now() < deadline, `the history has no traffic after 20 s: ${JSON.stringify(points).slice(0, 400)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    page = await browser.context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    openedAt = Date.now();
    await page.goto(`${farm.url}/`);
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 15_000 });
  });

  after(async () => {
    await browser?.close();
    await farm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("starts the overview's charts with the farm's history from before the page opened", async () => {
    // A fresh browser profile: nothing in localStorage, so every point before the page
    // opened came from the controller's history.
    const fromHistory = await page.waitForFunction(
      (opened) => {
        const points = window.__farm?.history.points ?? [];
        const before = points.filter((p) => p.t < opened - 1000);
        return before.length >= 3 && before.some((p) => p.rps > 0) ? { before: before.length, all: points.length, busiest: Math.max(...before.map((p) => p.rps)) } : null;
      },
      openedAt,
      { timeout: 10_000, polling: 100 },
    );
    const seen = await fromHistory.jsonValue();
    console.log(`# ${seen.before} of ${seen.all} points from before the page opened; busiest ${seen.busiest.toFixed(1)} req/s`);
    // The load tests' traffic is in them.
    assert.ok(seen.busiest >= 20, `the history has the load tests' requests (${seen.busiest} req/s)`);
    // The chart draws them, and the live points go on after them.
    const chart = page.getByTestId("farm-chart-rps");
    await page.waitForFunction((opened) => Number(document.querySelector('[data-testid="farm-chart-rps"]')?.dataset.from) < opened - 1000, openedAt, { timeout: 5000, polling: 100 });
    const count = Number(await chart.getAttribute("data-points"));
    assert.ok(count >= seen.before, `the chart draws the history (${count} points)`);
    await page.waitForFunction((opened) => (window.__farm?.history.points ?? []).some((p) => p.t > opened + 1000), openedAt, { timeout: 5000, polling: 100 });
    assert.deepEqual(errors, []);
  });

  it("lists both runs and compares them side by side: p99, throughput and their differences", async () => {
    const [first, second] = runs.map((r) => r.id);
    await page.getByRole("link", { name: "Runs", exact: true }).click();
    const table = page.getByTestId("runs-table");
    await table.waitFor({ timeout: 10_000 });
    for (const id of [first, second]) {
      const row = page.getByTestId(`run-row-${id}`);
      await row.waitFor({ timeout: 5000 });
      assert.equal(await row.getAttribute("data-state"), "finished");
      assert.equal(await row.getAttribute("data-kind"), "load test");
    }
    // Newest first.
    const order = await table.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.testid.replace("run-row-", "")));
    assert.ok(order.indexOf(second) < order.indexOf(first), `newest first: ${order}`);
    assert.match(await page.getByTestId(`run-row-${first}`).textContent(), /200/);

    await page.getByLabel(`Compare ${first}`).check();
    assert.equal(await page.getByTestId("runs-compare").getAttribute("data-state"), "one");
    await page.getByLabel(`Compare ${second}`).check();
    assert.equal(await page.evaluate(() => location.hash), `#/runs/${first}/${second}`);
    const compare = page.getByTestId("runs-compare");
    await page.waitForFunction(() => document.querySelector('[data-testid="runs-compare"]')?.dataset.state === "ready", null, { timeout: 10_000, polling: 50 });
    // The older run is the baseline.
    assert.equal(await compare.getAttribute("data-a"), first);
    assert.equal(await compare.getAttribute("data-b"), second);

    const row = async (key) => {
      const r = page.getByTestId(`compare-${key}`);
      return {
        a: Number(await r.getAttribute("data-a")),
        b: Number(await r.getAttribute("data-b")),
        diff: Number(await r.getAttribute("data-diff")),
        cells: [await r.getByTestId("compare-a").textContent(), await r.getByTestId("compare-b").textContent(), await r.getByTestId("compare-diff").textContent()],
      };
    };
    const p99 = await row("p99");
    const rps = await row("rps");
    console.log(`# p99 ${JSON.stringify(p99.cells)}; throughput ${JSON.stringify(rps.cells)}`);
    // The figures are each run's own, side by side.
    assert.ok(p99.a > 0 && p99.b > 0, `both p99s: ${p99.a}, ${p99.b}`);
    assert.ok(Math.abs(p99.a - runs[0].result.latency.p99_ms) < 1e-6 && Math.abs(p99.b - runs[1].result.latency.p99_ms) < 1e-6);
    assert.match(p99.cells[0], /^\d+(\.\d+)? (ms|s)$/);
    assert.match(p99.cells[1], /^\d+(\.\d+)? (ms|s)$/);
    assert.match(p99.cells[2], /^([+-]\d+\.\d %|0\.0 %)$/);
    assert.ok(Math.abs(rps.a - runs[0].result.requests_per_second) < 1e-6 && Math.abs(rps.b - runs[1].result.requests_per_second) < 1e-6);
    assert.match(rps.cells[0], /^\d+(\.\d)?\/s$/);
    // Twice the rate: well above the first's throughput, and said so.
    assert.ok(rps.diff > 30, `throughput difference ${rps.diff} %`);
    assert.match(rps.cells[2], /^\+\d+\.\d %$/);
    assert.equal(await page.getByTestId("compare-rps").getAttribute("data-tone"), "better");
    for (const key of ["p50", "p90", "p999", "max", "requests", "failures", "errorRate", "duration"]) {
      assert.equal(await page.getByTestId(`compare-${key}`).count(), 1, key);
    }
    assert.equal((await row("requests")).cells[2], "0.0 %");

    // Their per-second timelines, overlaid from their starts.
    for (const id of ["compare-chart-throughput", "compare-chart-p99"]) {
      const chart = page.getByTestId(id);
      assert.ok(Number(await chart.getAttribute("data-points")) >= 2, `${id} has seconds`);
      assert.equal(Number(await chart.getAttribute("data-from")), 500, `${id} starts at second 0`);
      const label = await chart.getByRole("img").getAttribute("aria-label");
      assert.ok(label.includes(first) && label.includes(second), `${id} draws both: ${label}`);
    }
    assert.equal(await page.locator('[data-testid="compare-chart-throughput"] .chart-line').count(), 2);
    assert.deepEqual(errors, []);
  });

  it("lists the farm's newest events, the runs' ends among them", async () => {
    const [, second] = runs.map((r) => r.id);
    await page.waitForFunction(
      (id) => [...document.querySelectorAll('[data-testid="event"][data-kind="run_ended"]')].some((e) => e.textContent.includes(id)),
      second,
      { timeout: 8000, polling: 100 },
    );
    const events = await page.getByTestId("event").evaluateAll((items) => items.map((e) => [e.dataset.kind, e.dataset.server, e.querySelector("time")?.textContent]));
    console.log(`# ${events.length} events, newest: ${JSON.stringify(events.slice(0, 3))}`);
    assert.ok(events.length <= 50);
    assert.ok(events.every(([, , time]) => /\d\d:\d\d:\d\d$/.test(time)), "each event has its time");
    assert.ok(events.some(([kind, server]) => kind === "added" && server !== "0"), "the servers' arrival");
    assert.deepEqual(errors, []);
  });

  it("after a restart during a run: the charts still reach back before it, and the run is interrupted", async () => {
    const r = await fetch(`${farm.url}/api/load-tests`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ rate_per_second: 20, duration_seconds: 60 }),
    });
    const { id } = await r.json();
    assert.equal(r.status, 200);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await page.close();
    // Killed, as a controller that dies: its nodes go with it, and the history keeps the
    // run as it was, under way.
    farm.proc.child.kill("SIGKILL");
    await farm.proc.exited;
    const stoppedAt = Date.now();
    farm = await farmUp(SERVERS, history);
    // Another port: another origin, whose storage holds nothing of the first page's.
    page = await browser.context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${farm.url}/`);
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 15_000 });
    const kept = await page.waitForFunction(
      ([opened, stopped]) => {
        const points = window.__farm?.history.points ?? [];
        const before = points.filter((p) => p.t < stopped - 500);
        return before.length >= 3 && before.some((p) => p.t < opened && p.rps > 0) ? before.length : null;
      },
      [openedAt, stoppedAt],
      { timeout: 10_000, polling: 100 },
    );
    console.log(`# ${await kept.jsonValue()} points from before the restart`);
    await page.waitForFunction((stopped) => Number(document.querySelector('[data-testid="farm-chart-rps"]')?.dataset.from) < stopped - 500, stoppedAt, { timeout: 5000, polling: 100 });

    await page.getByRole("link", { name: "Runs", exact: true }).click();
    const row = page.getByTestId(`run-row-${id}`);
    await row.waitFor({ timeout: 10_000 });
    assert.equal(await row.getAttribute("data-state"), "interrupted");
    assert.match(await row.textContent(), /Interrupted/);
    for (const done of runs) assert.equal(await page.getByTestId(`run-row-${done.id}`).getAttribute("data-state"), "finished");
    assert.deepEqual(errors, []);
  });
});
