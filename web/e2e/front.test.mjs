// Load tests through a front, in headless Chromium against a real `farm up`. The front is the
// node of server 1 itself: a degenerate but real front, since every answer then names server 1
// in its x-farm-server header. The share table, the fairness figures and the share chart must
// say so, live and at the end; a failover drill's moments show on the chart; a front beyond
// the farm is refused by the controller, which names spec.front_url. Run with `npm run e2e`
// after `npm run build` and `cargo build -p farm` (the binary embeds web/dist; or set
// FARM_DASHBOARD_DIR=web/dist). Fails, never skips, when Chromium is missing.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launch } from "./browser.mjs";
import { assertCurrentBuild, eventually, farmUp } from "./farm.mjs";

const SERVERS = 3;

const resultState = (page) => page.getByTestId("loadtest-result").getAttribute("data-state");

async function waitForState(page, state, timeout) {
  await page.waitForFunction((want) => document.querySelector('[data-testid="loadtest-result"]')?.getAttribute("data-state") === want, state, { timeout, polling: 50 });
}

describe("load tests through a front in the dashboard against farm up", () => {
  let farm;
  let browser;
  let page;
  let form;
  let frontUrl;
  const errors = [];

  before(async () => {
    browser = await launch();
    farm = await farmUp(SERVERS);
    await assertCurrentBuild(farm.url);
    // Server 1's node, found as a user would: from the REST API.
    const response = await fetch(`${farm.url}/api/servers`);
    assert.equal(response.status, 200, `GET /api/servers answered ${response.status}`);
    const { servers } = await response.json();
    const one = servers.find((s) => s.id === 1);
    assert.ok(one, `server 1 in ${JSON.stringify(servers.map((s) => s.id))}`);
    const port = /:(\d+)$/.exec(one.node_address)?.[1];
    assert.ok(port, `server 1's node_address ${one.node_address} ends with a port`);
    // Its node listens on loopback (farm up binds 127.0.0.1); a wildcard address is reached there too.
    frontUrl = `http://127.0.0.1:${port}`;

    page = await browser.context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${farm.url}/`);
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 15_000 });
    await page.waitForFunction((n) => document.querySelectorAll('[data-status="healthy"][data-testid^="server-card-"]').length === n, SERVERS, { timeout: 15_000 });
    await page.getByRole("link", { name: "Load test" }).click();
    form = page.getByRole("form", { name: "Load test settings" });
  });

  after(async () => {
    await browser?.close();
    await farm?.stop();
  });

  it("disables server targeting through a front, and says what is wrong with the weights beside the field", async () => {
    const allServers = form.getByRole("radio", { name: /All servers/ });
    assert.equal(await allServers.isDisabled(), false);
    await form.getByLabel("Send every request through a front (a load balancer)").check();
    assert.equal(await allServers.isDisabled(), true);
    assert.equal(await form.getByRole("radio", { name: "Ids", exact: true }).isDisabled(), true);
    const url = form.getByLabel("Front URL");
    assert.equal(await url.getAttribute("placeholder"), "http://127.0.0.1:8080");

    const weights = form.getByLabel("Weights (optional)");
    await weights.fill("1=2, 9=1");
    await weights.blur();
    await form.getByText("server 9 is not part of this farm").waitFor({ timeout: 5000 });
    assert.equal(await weights.getAttribute("aria-invalid"), "true");
    await weights.fill("1=2, 2=0");
    await form.getByText('"2=0": a weight is 1 to 256').waitFor({ timeout: 5000 });

    // Start is refused in the page: nothing reaches the controller, the empty URL is named.
    await form.getByRole("button", { name: "Start load test" }).click();
    await form.getByText("The front's URL, like http://127.0.0.1:8080").waitFor({ timeout: 5000 });
    assert.equal(await resultState(page), "idle");
    await weights.fill("");
    assert.equal(await weights.getAttribute("aria-invalid"), null);
  });

  it("runs through server 1's node: server 1 gets 100%, the others 0%, live and at the end", async () => {
    await form.getByLabel("Front URL").fill(frontUrl);
    await form.getByLabel("Duration").check();
    await form.getByLabel("Run for (s)").fill("3");
    await form.getByLabel("Workers").fill("4");
    await form.getByRole("button", { name: "Start load test" }).click();

    // Live: the share table fills while the run goes on (progress comes once a second).
    await page.waitForFunction(
      () =>
        document.querySelector('[data-testid="loadtest-result"]')?.getAttribute("data-state") === "running" &&
        document.querySelector('[data-testid="share-1"]')?.textContent === "100%",
      null,
      { timeout: 10_000, polling: 50 },
    );
    await waitForState(page, "done", 30_000);
    const result = page.getByTestId("front-result");
    assert.match(await result.getByRole("heading").first().textContent(), new RegExp(`Through ${frontUrl.replace(/\./g, "\\.")}`));

    const text = (id) => page.getByTestId(id).textContent();
    const total = Number((await text("lt-requests")).replace(/,/g, ""));
    assert.ok(total > 0, `some requests went through the front (${total})`);
    const row = (id) => result.getByTestId(`share-row-${id}`).getByRole("cell");
    assert.deepEqual(await result.locator('[data-testid^="share-row-"]').evaluateAll((rows) => rows.map((r) => r.dataset.testid)), ["share-row-1", "share-row-2", "share-row-3"]);
    // Requests, Failed, Share, Expected, p50, p99.
    const one = await row(1).allTextContents();
    assert.equal(Number(one[0].replace(/,/g, "")), total, "every answer is server 1's");
    assert.equal(one[1], "0");
    assert.equal(await text("share-1"), "100%");
    assert.equal(await text("expected-1"), "33.3%");
    assert.match(one[4], /\d/);
    for (const id of [2, 3]) {
      const cells = await row(id).allTextContents();
      assert.deepEqual(cells, ["0", "0", "0%", "33.3%", "–", "–"], `server ${id}`);
    }

    assert.equal(await text("front-ratio"), "0 · a server got nothing");
    assert.equal(await text("front-deviation"), "200.0%");
    assert.equal(await text("front-unattributed"), "0");

    // The chart has server 1's band alone, and no drill marks.
    const chart = result.getByTestId("share-chart");
    assert.deepEqual(await chart.locator("path[data-series]").evaluateAll((paths) => paths.map((p) => p.dataset.series)), ["server-1"]);
    assert.match(await chart.getAttribute("aria-label"), /^Share per second: \d s; last second: server-1 100\.0%$/);
    assert.equal(await chart.locator("[data-mark]").count(), 0);
    assert.equal(await result.getByTestId("drill").count(), 0);
    // A run through a front has no per-target table: the front chose the servers.
    assert.equal(await page.locator("table.per-server").count(), 0);
    assert.deepEqual(errors, []);
  });

  it("marks a failover drill's moments on the chart and gives its figures, 'not seen' where absent", async () => {
    await form.getByLabel("Failover drill: take a server down during the run").check();
    const drill = form.getByRole("group", { name: "Failover drill" });
    await drill.getByLabel("Action").selectOption("stop");
    await drill.getByLabel("Server id").fill("3");
    await drill.getByLabel("At (s)").fill("1");
    await drill.getByLabel("For (s)").fill("3");
    // 1 s + 3 s does not end within a 3 s run: the form says so before the controller would.
    await drill.getByText("The server must be back before the run ends: 1 s + 3 s is not under the run's 3 s").waitFor({ timeout: 5000 });
    await drill.getByLabel("For (s)").fill("1");
    assert.equal(await drill.locator(".field-error").count(), 0);
    await form.getByRole("button", { name: "Start load test" }).click();
    await waitForState(page, "done", 60_000);

    const result = page.getByTestId("front-result");
    const figure = (key) => result.getByTestId(`drill-${key}`).textContent();
    assert.match(await figure("down"), /^1\.\d\d s$/);
    assert.match(await figure("back"), /^\d+\.\d\d s$/);
    // Server 3 never served through this front: nothing failed, nothing to detect or re-admit.
    for (const key of ["first-error", "failover", "detection", "readmission"]) assert.equal(await figure(key), "not seen", key);
    assert.equal(await figure("failed"), "0");
    const chart = result.getByTestId("share-chart");
    assert.equal(await chart.locator('[data-mark="down"]').count(), 1);
    assert.equal(await chart.locator('[data-mark="back"]').count(), 1);
    assert.equal(await chart.locator("rect.drill-band").count(), 1);
    assert.match(await chart.getAttribute("aria-label"), /server-3 stopped at 1\.\d s, back at \d+\.\d s/);
    assert.equal(await page.getByTestId("share-1").textContent(), "100%");
    // The farm brought server 3 back.
    await eventually("server 3 healthy again", 20_000, async () => {
      const { servers } = await (await fetch(`${farm.url}/api/servers`)).json();
      return servers.find((s) => s.id === 3)?.status === "healthy";
    }, 200);
    await form.getByLabel("Failover drill: take a server down during the run").uncheck();
    assert.deepEqual(errors, []);
  });

  it("shows the controller's refusal of a front beyond the farm, naming spec.front_url", async () => {
    await form.getByLabel("Front URL").fill("http://10.1.2.3:80");
    await form.getByRole("button", { name: "Start load test" }).click();
    await waitForState(page, "error", 10_000);
    const refusal = page.getByTestId("loadtest-result").locator(".error-text");
    const text = await refusal.textContent();
    console.log(`# ${text}`);
    assert.match(text, /spec\.front_url/);
    assert.match(text, /10\.1\.2\.3/);
    await page.getByText(/^Load test failed: .*spec\.front_url/).waitFor({ timeout: 5000 });
    assert.deepEqual(errors, []);
  });
});
