// Takes the README's screenshots: a real farm of 24 servers with some of everything (load,
// errors, a degraded, a stopped and a paused server), given a minute and a half to fill the
// charts, then the dashboard at desktop (1440×900) and phone (390×844) widths.
//   npm run screenshots [-- --wait-seconds 90 --out ../docs]
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { launch } from "./browser.mjs";
import { farmUp } from "./farm.mjs";

const { values } = parseArgs({
  options: { "wait-seconds": { type: "string", default: "90" }, out: { type: "string", default: fileURLToPath(new URL("../../docs", import.meta.url)) } },
});
const out = resolve(values.out);
mkdirSync(out, { recursive: true });

// Serve this checkout's web/dist, whatever the binary embeds.
const farm = await farmUp(24, { FARM_DASHBOARD_DIR: fileURLToPath(new URL("../dist", import.meta.url)) });
const post = (path, body) =>
  fetch(`${farm.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.json());
const browser = await launch();
let traffic = true;
try {
  const seconds = Number(values["wait-seconds"]);
  // Traffic for the charts: open-model tests across the farm, back to back, and a trickle of 500s.
  const keepSending = async (spec) => {
    while (traffic) await post("/api/load-test", { ...spec, duration_seconds: 20 }).catch(() => {});
  };
  // Not at the servers stopped and paused below: requests to a frozen server wait for their
  // timeout, fill the in-flight slots and stall an open-model test (as they would in life).
  const up = Array.from({ length: 24 }, (_, i) => i + 1).filter((id) => ![5, 9, 18].includes(id));
  void keepSending({ server_ids: up, rate_per_second: 120, concurrency: 20, timeout_ms: 1000 });
  void keepSending({ server_ids: [6, 14], path: "/error/500", rate_per_second: 3, concurrency: 2, timeout_ms: 1000 });
  // Let the page collect its history from the start.
  const warm = await browser.context.newPage();
  await warm.goto(`${farm.url}/`);
  await new Promise((r) => setTimeout(r, Math.max(0, seconds - 25) * 1000));
  await post("/api/servers/5/action", { action: "stop" });
  await post("/api/servers/18/action", { action: "stop" });
  await post("/api/servers/9/action", { action: "pause" });
  await post("/api/simulate-load", { server_ids: [3], cpu_percent: 95, memory_mb: 96, duration_seconds: 120 });
  await post("/api/simulate-load", { server_ids: [11, 20], cpu_percent: 30, memory_mb: 48, duration_seconds: 120 });
  await new Promise((r) => setTimeout(r, 20_000));

  const page = await browser.context.newPage(); // a reload: the history comes back from storage
  for (const [name, width, height] of [
    ["dashboard-desktop.png", 1440, 900],
    ["dashboard-phone.png", 390, 844],
  ]) {
    await page.setViewportSize({ width, height });
    await page.goto(`${farm.url}/`);
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 15_000 });
    await new Promise((r) => setTimeout(r, 4000));
    await page.screenshot({ path: `${out}/${name}`, animations: "disabled" });
    console.log(`wrote ${out}/${name}`);
  }
  if (process.env.EXTRA_SHOTS) {
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.goto(`${farm.url}/#/servers/3`);
    await new Promise((r) => setTimeout(r, 5000));
    await page.screenshot({ path: `${out}/dashboard-detail.png` });
    await page.goto(`${farm.url}/#/load-test`);
    console.log("extra shots written");
  }
} finally {
  traffic = false;
  await browser.close();
  await farm.stop();
}
