// The dashboard in headless Chromium against real farms: `farm up` for the grid, live
// numbers, lifecycle actions and load tests; the roles as separate processes for the
// restart test. Run with `npm run e2e` after `npm run build` and `cargo build -p farm`
// (the binary embeds web/dist). Fails, never skips, when Chromium is missing.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch } from "./browser.mjs";
import { assertCurrentBuild, eventually, farmUp, onLowPort, Proc, startRole } from "./farm.mjs";

const SERVERS = 5;

/** The page is this checkout's dashboard, and `GET /` without Accept: text/html is the API's. */
async function assertServed(url) {
  await assertCurrentBuild(url);
  const json = await (await fetch(`${url}/`)).json();
  assert.equal(json.name, "farm", "GET / without Accept: text/html still answers the API info");
}

async function openDashboard(context, url) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${url}/`);
  await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 15_000 });
  return { page, errors };
}

const cardStatus = (page, id) => page.getByTestId(`server-card-${id}`).getAttribute("data-status");

describe("dashboard against farm up", () => {
  let farm;
  let browser;
  let page;
  let errors;

  before(async () => {
    browser = await launch();
    farm = await farmUp(SERVERS);
    await assertServed(farm.url);
    ({ page, errors } = await openDashboard(browser.context, farm.url));
  });

  after(async () => {
    await browser?.close();
    await farm?.stop();
  });

  it("shows every server in the grid", async () => {
    for (let id = 1; id <= SERVERS; id++) {
      await page.getByTestId(`server-card-${id}`).waitFor({ timeout: 10_000 });
    }
    assert.equal(await page.locator('[data-testid^="server-card-"]').count(), SERVERS);
    assert.equal(await page.getByTestId("servers-total").textContent(), String(SERVERS));
    await page.waitForFunction((n) => document.querySelectorAll('[data-status="healthy"][data-testid^="server-card-"]').length === n, SERVERS, { timeout: 10_000 });
    assert.deepEqual(errors, []);
  });

  it("shows a server's numbers change within 2 s of simulating load on it", async () => {
    const id = 2;
    const figures = () =>
      page.evaluate((id) => {
        const text = (k) => document.querySelector(`[data-testid="${k}-${id}"]`)?.textContent ?? "";
        return { cpu: parseFloat(text("cpu")), mem: text("mem") };
      }, id);
    const before = await figures();
    await page.getByRole("button", { name: `server-${id}: open details` }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    await dialog.getByLabel("CPU %").fill("90");
    await dialog.getByLabel("Memory MiB").fill("128");
    await dialog.getByLabel("Seconds").fill("20");
    const started = Date.now();
    await dialog.getByRole("button", { name: "Apply load" }).click();
    // The card (under the drawer) follows the stream. Memory is read as it is at each
    // sample, CPU as an average over the last interval: either moving counts.
    await page.waitForFunction(
      ([id, cpu0, mem0]) => {
        const text = (k) => document.querySelector(`[data-testid="${k}-${id}"]`)?.textContent ?? "";
        return parseFloat(text("cpu")) >= cpu0 + 15 || (text("mem") !== mem0 && /MiB|GiB/.test(text("mem")) && parseFloat(text("mem")) >= parseFloat(mem0) + 64);
      },
      [id, before.cpu, before.mem],
      { timeout: 2000, polling: 50 },
    );
    const took = Date.now() - started;
    const after = await figures();
    console.log(`# server-${id} went from CPU ${before.cpu}% / ${before.mem} to ${after.cpu}% / ${after.mem} on screen ${took} ms after the click`);
    // The call itself answers once the node holds its memory (slower in a debug build).
    await dialog.getByRole("button", { name: "Apply load" }).waitFor({ timeout: 30_000 });
    await page.waitForFunction((id) => parseFloat(document.querySelector(`[data-testid="cpu-${id}"]`)?.textContent ?? "0") >= 25, id, { timeout: 5000 });
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
  });

  it("stops a server from the UI within 2 s, and starts it again", async () => {
    const id = 4;
    await page.getByRole("button", { name: `server-${id}: open details` }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("button", { name: "Stop", exact: true }).click();
    const clicked = Date.now();
    await page.waitForFunction((id) => document.querySelector(`[data-testid="server-card-${id}"]`)?.getAttribute("data-status") === "stopped", id, { timeout: 2000, polling: 50 });
    console.log(`# server-${id}'s card turned stopped ${Date.now() - clicked} ms after the click`);
    assert.equal(await dialog.getByTestId("detail-status").textContent(), "stopped");
    await dialog.getByRole("button", { name: "Start", exact: true }).click();
    const restarted = Date.now();
    await page.waitForFunction((id) => document.querySelector(`[data-testid="server-card-${id}"]`)?.getAttribute("data-status") === "healthy", id, { timeout: 15_000, polling: 50 });
    console.log(`# server-${id}'s card turned healthy again ${Date.now() - restarted} ms after Start`);
    // The events of the server tell the story.
    await dialog.getByText("Node stopped").first().waitFor({ timeout: 10_000 });
    await page.keyboard.press("Escape");
  });

  it("selects servers and acts on them in bulk", async () => {
    await page.getByLabel("Select server-1").check();
    await page.getByLabel("Select server-3").check();
    assert.equal(await page.getByTestId("selection-count").textContent(), "2 selected");
    await page.getByRole("group", { name: "Selection" }).getByRole("button", { name: "Restart" }).click();
    await page.getByText("Restart: 2 servers done").waitFor({ timeout: 20_000 });
    await page.getByRole("button", { name: "Clear" }).click();
    for (const id of [1, 3]) {
      await page.waitForFunction((id) => document.querySelector(`[data-testid="server-card-${id}"]`)?.getAttribute("data-status") === "healthy", id, { timeout: 15_000 });
    }
  });

  it("filters and sorts the grid", async () => {
    await page.getByLabel("Filter servers").fill("server-5");
    await eventually("one card", 5000, async () => (await page.locator('[data-testid^="server-card-"]').count()) === 1);
    await page.getByLabel("Filter servers").fill("");
    await page.getByLabel("Sort by").selectOption("id");
    await page.getByRole("button", { name: /Ascending order/ }).click();
    await eventually("descending order", 5000, async () => {
      const first = await page.locator('[data-testid^="server-card-"]').first().getAttribute("data-testid");
      return first === `server-card-${SERVERS}`;
    });
    await page.getByRole("button", { name: /Descending order/ }).click();
  });

  it("runs a load test from the UI and shows its result", async () => {
    await page.getByRole("link", { name: "Load test" }).click();
    const form = page.getByRole("form", { name: "Load test settings" });
    await form.getByLabel("Total requests").fill("600");
    await form.getByLabel("Workers").fill("6");
    await form.getByRole("button", { name: "Start load test" }).click();
    const result = page.getByTestId("loadtest-result");
    await page.waitForFunction(() => document.querySelector('[data-testid="loadtest-result"]')?.getAttribute("data-state") === "done", null, { timeout: 30_000 });
    assert.equal(await page.getByTestId("lt-requests").textContent(), "600");
    assert.ok(parseFloat(await page.getByTestId("lt-throughput").textContent()) > 0);
    for (const k of ["p50", "p90", "p99", "p99.9", "max"]) assert.match(await page.getByTestId(`lt-${k}`).textContent(), /\d/);
    assert.equal(await result.locator("table.per-server tbody tr").count(), SERVERS);
    await result.getByText("200", { exact: true }).first().waitFor();
  });

  it("cancels a running load test", async () => {
    const form = page.getByRole("form", { name: "Load test settings" });
    await form.getByLabel("Duration").check();
    await form.getByLabel("Run for (s)").fill("60");
    await form.getByRole("button", { name: "Start load test" }).click();
    await page.getByRole("progressbar").waitFor({ timeout: 10_000 });
    await page.getByTestId("lt-requests").waitFor({ timeout: 10_000 });
    await form.getByRole("button", { name: "Cancel" }).click();
    await page.getByText("Stopped: cancelled").waitFor({ timeout: 5000 });
    await form.getByRole("button", { name: "Start load test" }).waitFor({ state: "visible" });
    assert.ok(await form.getByRole("button", { name: "Start load test" }).isEnabled());
    assert.deepEqual(errors, []);
  });
});

describe("dashboard against a gateway beyond loopback", () => {
  let farm;
  let browser;
  let dataDir;

  after(async () => {
    await browser?.close();
    await farm?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("asks for the farm's token when a change is refused, then stops the server", async () => {
    // The farm keeps the token it generates in its data directory.
    dataDir = mkdtempSync(join(tmpdir(), "farm-data-"));
    farm = await farmUp(2, { FARM_DATA_DIR: dataDir }, { gatewayListen: "0.0.0.0:0" });
    const token = process.env.FARM_TOKEN?.trim() || readFileSync(join(dataDir, "token"), "utf8").trim();
    assert.match(farm.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    await assertServed(farm.url);
    browser = await launch();
    const { page, errors } = await openDashboard(browser.context, farm.url);
    const id = 2;
    await page.waitForFunction((id) => document.querySelector(`[data-testid="server-card-${id}"]`)?.getAttribute("data-status") === "healthy", id, { timeout: 15_000 });
    await page.getByRole("button", { name: `server-${id}: open details` }).click();
    const detail = page.getByTestId("server-detail");
    const ask = page.getByRole("dialog", { name: "The farm's token" });
    const field = ask.getByLabel("Farm token");

    // Cancel: the action fails, saying why, and nothing changed.
    await detail.getByRole("button", { name: "Stop", exact: true }).click();
    await ask.waitFor({ timeout: 10_000 });
    assert.equal(await field.getAttribute("type"), "password");
    assert.match(await ask.textContent(), /~\/\.local\/share\/farm\/token/);
    await ask.getByRole("button", { name: "Cancel" }).click();
    await ask.waitFor({ state: "detached" });
    await page.getByText(/Stop failed: no token given/).waitFor({ timeout: 5000 });
    assert.equal(await cardStatus(page, id), "healthy");

    // A wrong token: the gateway's message, and the question again.
    await detail.getByRole("button", { name: "Stop", exact: true }).click();
    await field.fill("not-this-farms-token-0123456789");
    await ask.getByRole("button", { name: "Use token" }).click();
    await ask.getByRole("alert").getByText(/refused this token: .*needs the farm's token/).waitFor({ timeout: 10_000 });
    assert.equal(await field.inputValue(), "");

    // The right one: the call is sent again with it, and the server stops.
    await field.fill(token);
    await ask.getByRole("button", { name: "Use token" }).click();
    await ask.waitFor({ state: "detached" });
    await page.waitForFunction((id) => document.querySelector(`[data-testid="server-card-${id}"]`)?.getAttribute("data-status") === "stopped", id, { timeout: 15_000, polling: 50 });
    await page.getByText(`Stop: server-${id} done`).waitFor({ timeout: 5000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem("farm.token")), token);

    // Later changes carry the kept token: no question.
    await detail.getByRole("button", { name: "Start", exact: true }).click();
    await page.waitForFunction((id) => document.querySelector(`[data-testid="server-card-${id}"]`)?.getAttribute("data-status") === "healthy", id, { timeout: 15_000, polling: 50 });
    assert.equal(await ask.count(), 0);
    assert.deepEqual(errors, []);
  });
});

describe("dashboard across restarts (controller, gateway and agents as separate processes)", () => {
  const procs = [];
  let browser;

  after(async () => {
    await browser?.close();
    for (const p of procs.reverse()) await p.stop();
  });

  it("recovers without a reload after the gateway restarts, and after the controller restarts", async () => {
    browser = await launch();
    // The controller and the gateway come back on the ports they had, so these are chosen
    // below the ephemeral range: while one is down, no outgoing connection (the page's and the
    // agents' reconnects among them) can take its port. The nodes bind port 0.
    const startController = async (port) => {
      const started = await startRole("controller", `127.0.0.1:${port}`);
      procs.push(started.proc);
      return started;
    };
    const firstController = await onLowPort(startController);
    const { port: controllerPort, url: controllerUrl } = firstController;
    let controller = firstController.proc;
    const startGateway = async (port) => {
      const started = await startRole("gateway", `127.0.0.1:${port}`, ["--controller", controllerUrl]);
      procs.push(started.proc);
      return started;
    };
    const firstGateway = await onLowPort(startGateway);
    const { port: gatewayPort, url } = firstGateway;
    let gateway = firstGateway.proc;
    for (let id = 1; id <= 3; id++) {
      procs.push(new Proc(`agent ${id}`, ["agent", "--id", String(id), "--controller", controllerUrl, "--node-listen", "127.0.0.1:0"]));
    }
    const { page, errors } = await openDashboard(browser.context, url);
    await page.waitForFunction(() => document.querySelectorAll('[data-status="healthy"][data-testid^="server-card-"]').length === 3, null, { timeout: 30_000 });
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    const updatedAt = () => page.evaluate(() => window.__farm.getSnapshot().farm.updatedAt);
    const connection = () => page.getByTestId("connection").getAttribute("data-state");

    // The gateway goes away: the page says so, and keeps what it showed.
    await gateway.stop();
    await eventually("the page to notice the gateway is gone", 10_000, async () => (await connection()) === "reconnecting");
    assert.equal(await page.locator('[data-testid^="server-card-"]').count(), 3);
    await page.waitForTimeout(1500); // a few failed attempts while the port is closed
    gateway = (await startGateway(gatewayPort)).proc;
    const back = Date.now();
    await eventually("the page to be live again", 15_000, async () => (await connection()) === "live");
    const recovered = await updatedAt();
    await eventually("fresh data after the gateway restart", 5000, async () => (await updatedAt()) > recovered);
    console.log(`# live again ${Date.now() - back} ms after the gateway came back`);

    // The controller goes away: the gateway answers UNAVAILABLE; agents reconnect to the new one.
    await controller.stop();
    await eventually("the page to notice the controller is gone", 10_000, async () => (await connection()) === "reconnecting");
    controller = (await startController(controllerPort)).proc;
    const cBack = Date.now();
    await eventually("the page to be live again", 20_000, async () => (await connection()) === "live");
    await page.waitForFunction(() => document.querySelectorAll('[data-status="healthy"][data-testid^="server-card-"]').length === 3, null, { timeout: 30_000 });
    console.log(`# live with 3 healthy servers ${Date.now() - cBack} ms after the controller came back`);

    assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
    assert.deepEqual(errors, []);
  });
});
