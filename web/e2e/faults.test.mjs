// Fault profiles in the dashboard, in headless Chromium against a real `farm up`: set a fault
// from a server's detail and from the selection, see the Watch stream mark the cards, check
// the farm's own record over REST, clear one kind and every kind, and read the controller's
// refusals. Run with `npm run e2e` after `npm run build` and `cargo build -p farm` (the binary
// embeds web/dist). Fails, never skips, when Chromium is missing.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launch } from "./browser.mjs";
import { assertCurrentBuild, eventually, farmUp } from "./farm.mjs";

const SERVERS = 4;

/** What the farm records for one server, over REST. */
async function restFaults(url, id) {
  const response = await fetch(`${url}/api/servers/${id}/faults`);
  assert.equal(response.status, 200, `GET /api/servers/${id}/faults answered ${response.status}`);
  const body = await response.json();
  assert.equal(body.server_id, id);
  return body.faults ?? {};
}

/** Waits until the card of server `id` lists exactly these kinds of fault in data-faults. */
async function cardFaults(page, id, kinds, timeout = 10_000) {
  await page.waitForFunction(
    ([id, want]) => document.querySelector(`[data-testid="server-card-${id}"]`)?.getAttribute("data-faults") === want,
    [id, kinds],
    { timeout, polling: 50 },
  );
}

describe("faults in the dashboard against farm up", () => {
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
  });

  after(async () => {
    await browser?.close();
    await farm?.stop();
  });

  it("sets a latency fault from a server's detail; the Watch marks its card, REST has it", async () => {
    const id = 2;
    for (let i = 1; i <= SERVERS; i++) assert.equal(await page.getByTestId(`server-card-${i}`).getAttribute("data-faults"), "");
    await page.getByRole("button", { name: `server-${id}: open details` }).click();
    const dialog = page.getByRole("dialog");
    const faults = dialog.getByTestId("faults");
    await faults.getByText("None.").waitFor();
    assert.equal(await faults.getByRole("button", { name: "Clear faults", exact: true }).isDisabled(), true);

    await faults.getByLabel("Fault", { exact: true }).selectOption("latency");
    await faults.getByLabel("Delay ms").fill("200");
    await faults.getByLabel("Jitter ms").fill("50");
    await faults.getByLabel("Duration s").fill("600");
    const clicked = Date.now();
    await faults.getByRole("button", { name: "Set fault" }).click();
    await page.getByText(`Set latency fault: server-${id} done`).waitFor({ timeout: 10_000 });
    await cardFaults(page, id, "latency");
    console.log(`# server-${id}'s card marked "latency" ${Date.now() - clicked} ms after the click`);

    // The detail lists it with the time it has left; the card's mark counts it.
    const chip = faults.getByRole("list", { name: `Faults on server-${id}` }).getByRole("listitem");
    assert.equal(await chip.count(), 1);
    assert.match(await chip.textContent(), /^latency 200±50 ms · \d+ min left/);
    assert.match(await page.getByTestId(`faults-${id}`).textContent(), /^1/);
    for (const other of [1, 3, 4]) assert.equal(await page.getByTestId(`server-card-${other}`).getAttribute("data-faults"), "");

    const rest = await restFaults(farm.url, id);
    assert.deepEqual(Object.keys(rest), ["latency"]);
    assert.equal(rest.latency.delay_ms, 200);
    assert.equal(rest.latency.jitter_ms, 50);
    assert.equal(rest.latency.when.duration_seconds, 600);
    assert.ok(rest.latency.when.expires_at_ms > Date.now() + 500_000, `expires_at_ms ${rest.latency.when.expires_at_ms} is about 600 s away`);
    assert.deepEqual(await restFaults(farm.url, 1), {});
  });

  it("shows the controller's refusal of a bad value, naming the field, and changes nothing", async () => {
    const id = 2;
    const faults = page.getByRole("dialog").getByTestId("faults");
    await faults.getByLabel("Fault", { exact: true }).selectOption("abort");
    await faults.getByLabel("Status").fill("503");
    await faults.getByLabel("Percent").fill("150");
    await faults.getByRole("button", { name: "Set fault" }).click();
    const refusal = page.getByText(/^Set abort fault failed: /);
    await refusal.waitFor({ timeout: 10_000 });
    const text = (await refusal.textContent()).replace(/×$/, "");
    console.log(`# ${text}`);
    assert.match(text, /faults\.abort\.when\.percent/);
    assert.match(text, /150/);

    // A partition needs the docker runtime; farm up runs processes.
    await faults.getByLabel("Fault", { exact: true }).selectOption("partition");
    assert.equal(await faults.getByLabel("Percent").count(), 0, "a partition has no percent");
    await faults.getByRole("button", { name: "Set fault" }).click();
    const partition = page.getByText(/^Set partition fault failed: /);
    await partition.waitFor({ timeout: 10_000 });
    assert.match(await partition.textContent(), /faults\.partition needs the docker runtime/);

    await page.waitForTimeout(500); // a change would have reached the page by now
    assert.equal(await page.getByTestId(`server-card-${id}`).getAttribute("data-faults"), "latency");
    assert.deepEqual(Object.keys(await restFaults(farm.url, id)), ["latency"]);
    await page.keyboard.press("Escape");
    await page.getByRole("dialog").waitFor({ state: "detached" });
  });

  it("sets an abort fault on a selection of two servers, clears one kind, then every kind", async () => {
    // A detail left open by a test that failed would stand in the way.
    if (await page.getByRole("dialog").count()) await page.keyboard.press("Escape");
    await page.getByLabel("Select server-2").check();
    await page.getByLabel("Select server-3").check();
    assert.equal(await page.getByTestId("selection-count").textContent(), "2 selected");
    const toggle = page.getByRole("group", { name: "Selection" }).getByRole("button", { name: "Faults", exact: true });
    assert.equal(await toggle.getAttribute("aria-expanded"), "false");
    await toggle.click();
    assert.equal(await toggle.getAttribute("aria-expanded"), "true");
    const panel = page.getByTestId("selection-faults");
    await panel.getByLabel("Fault", { exact: true }).selectOption("abort");
    await panel.getByLabel("Status").fill("500");
    await panel.getByLabel("Percent").fill("30");
    await panel.getByRole("button", { name: "Set fault" }).click();
    await page.getByText("Set abort fault: 2 servers done").waitFor({ timeout: 10_000 });
    await cardFaults(page, 2, "latency,abort");
    await cardFaults(page, 3, "abort");
    const abort3 = (await restFaults(farm.url, 3)).abort;
    assert.deepEqual(abort3.statuses, [{ status: 500, weight: 1 }]);
    assert.equal(abort3.when.percent, 30);

    // The panel names the kinds the selection has, and how many of its servers have each.
    const chips = panel.getByRole("list", { name: "Faults on the selection" }).getByRole("listitem");
    const want = JSON.stringify(["latency · 1 of 2×", "abort · 2 of 2×"]); // × is each chip's clear
    await eventually(`the selection's chips to read ${want}`, 5000, async () => JSON.stringify(await chips.allTextContents()) === want);

    // One kind: the latency of server-2 goes, the aborts stay.
    await panel.getByRole("button", { name: "Clear the latency fault on the selection" }).click();
    await page.getByText("Clear latency fault: 2 servers done").waitFor({ timeout: 10_000 });
    await cardFaults(page, 2, "abort");
    await cardFaults(page, 3, "abort");

    // Every kind: the marks go.
    await panel.getByRole("button", { name: "Clear faults", exact: true }).click();
    await page.getByText("Clear faults: 2 servers done").waitFor({ timeout: 10_000 });
    await cardFaults(page, 2, "");
    await cardFaults(page, 3, "");
    assert.equal(await page.getByTestId("faults-2").count(), 0);
    assert.deepEqual(await restFaults(farm.url, 2), {});
    assert.deepEqual(await restFaults(farm.url, 3), {});
    await panel.getByText("None.").waitFor();
    await page.getByRole("group", { name: "Selection" }).getByRole("button", { name: "Clear", exact: true }).click();
    assert.deepEqual(errors, []);
  });
});
