#!/usr/bin/env node
// The dashboard under a big farm: frames per second and JS heap over time, in headless
// Chromium (playwright-core + the Chrome DevTools Protocol).
//
// By default it starts what it measures: `farm controller`, `farm gateway` and the
// agent_swarm example (1,000 pretend agents, one sample a second each), from the release
// builds, on ports the kernel chooses (read back from what they print). With --url it
// measures a dashboard that is already running.
//
//   cargo build --release -p farm && cargo build --release -p farm-controller --example agent_swarm
//   npm --prefix web run build          # the binary embeds web/dist: build it before cargo
//   node web/bench/fps.mjs --minutes 10 [--servers 1000] [--interval-seconds 30]
//   node web/bench/fps.mjs --url http://127.0.0.1:8000 --minutes 2
//
// Every interval it prints: frames/s (requestAnimationFrame count over the interval), the
// 95th-percentile and worst frame time, frames/s during 3 s of continuous scrolling
// through the grid, the JS heap after a forced garbage collection (CDP
// HeapProfiler.collectGarbage + Runtime.getHeapUsage; flat means no leak), DOM nodes and
// the servers the page knows.
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { launch } from "../e2e/browser.mjs";
import { startRole } from "../e2e/farm.mjs";
import { spawn } from "node:child_process";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    minutes: { type: "string", default: "10" },
    servers: { type: "string", default: "1000" },
    "interval-seconds": { type: "string", default: "30" },
    width: { type: "string", default: "1440" },
    height: { type: "string", default: "900" },
  },
});
const minutes = Number(values.minutes);
const servers = Number(values.servers);
const every = Number(values["interval-seconds"]) * 1000;
const repo = fileURLToPath(new URL("../..", import.meta.url));
const stops = [];
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    process.exit(130);
  });
}

async function startFarm() {
  process.env.FARM_BIN ??= `${repo}target/x86_64-unknown-linux-gnu/release/farm`;
  const swarmBin = process.env.SWARM_BIN ?? `${repo}target/x86_64-unknown-linux-gnu/release/examples/agent_swarm`;
  for (const bin of [process.env.FARM_BIN, swarmBin]) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: build it first (see the top of this file)`);
  }
  const controller = await startRole("controller", "127.0.0.1:0");
  stops.push(() => controller.proc.stop());
  // Serve this checkout's web/dist, whatever the binary embeds.
  const dist = fileURLToPath(new URL("../dist", import.meta.url));
  const gateway = await startRole("gateway", "127.0.0.1:0", ["--controller", controller.url], { FARM_DASHBOARD_DIR: dist });
  stops.push(() => gateway.proc.stop());
  const swarm = spawn(
    swarmBin,
    ["--controller", controller.url, "--servers", String(servers), "--duration-secs", String(Math.ceil(minutes * 60 + 120))],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  stops.push(async () => {
    swarm.kill("SIGTERM");
    await new Promise((r) => (swarm.exitCode !== null ? r() : swarm.once("exit", r)));
  });
  const { url } = gateway;
  // Wait until the controller knows every server.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = await fetch(`${url}/api/metrics`).then((r) => r.json()).catch(() => ({}));
    if (m.servers_total >= servers) break;
    if (Date.now() > deadline) throw new Error(`only ${m.servers_total ?? 0} of ${servers} servers registered after 60 s`);
    await new Promise((r) => setTimeout(r, 500));
  }
  return url;
}

const rows = [];
/** Bounds every step, so a stalled page fails the run with a message instead of hanging it. */
function guard(promise, what, ms = 20_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s (page stalled?)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
try {
  const url = values.url ?? (await startFarm());
  const { context, close } = await launch();
  stops.push(close);
  const page = context.pages()[0] ?? (await context.newPage());
  await page.setViewportSize({ width: Number(values.width), height: Number(values.height) });
  await page.addInitScript(() => {
    const w = window;
    w.__frames = [];
    let last = performance.now();
    const tick = (now) => {
      w.__frames.push(now - last);
      last = now;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    w.__scroll = (ms) =>
      new Promise((resolve) => {
        const end = performance.now() + ms;
        setTimeout(resolve, ms + 1000); // even if frames stop coming
        let dir = 1;
        const step = () => {
          const max = document.documentElement.scrollHeight - innerHeight;
          if (scrollY >= max - 5) dir = -1;
          if (scrollY <= 0) dir = 1;
          scrollBy(0, 60 * dir);
          if (performance.now() < end) requestAnimationFrame(step);
          else resolve();
        };
        requestAnimationFrame(step);
      });
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send("HeapProfiler.enable");
  await page.goto(`${url}/`);
  await page.waitForFunction((n) => (window.__farm?.getSnapshot().farm.ordered.length ?? 0) >= n, servers, { timeout: 60_000 });
  console.log(`dashboard ${url}/ with ${servers} servers; measuring for ${minutes} min, every ${every / 1000} s`);
  console.log("   t(s)   fps  p95(ms) worst(ms)  scroll-fps  heap(MB)  dom-nodes  servers");
  const take = () => guard(page.evaluate(() => window.__frames.splice(0)), "reading the frame times");
  const stats = (frames, ms) => {
    const sorted = [...frames].sort((a, b) => a - b);
    return { fps: (frames.length * 1000) / ms, p95: sorted[Math.floor(sorted.length * 0.95)] ?? NaN, worst: sorted[sorted.length - 1] ?? NaN };
  };
  const started = Date.now();
  await take();
  let mark = Date.now();
  while (Date.now() - started + every <= minutes * 60_000 + 2000) {
    await new Promise((r) => setTimeout(r, Math.max(0, every - 3000 - 500)));
    const steady = stats(await take(), Date.now() - mark);
    // Scroll through the grid for 3 s.
    const s0 = Date.now();
    await guard(page.evaluate(() => window.__scroll(3000)), "scrolling");
    const scroll = stats(await take(), Date.now() - s0);
    await guard(page.evaluate(() => scrollTo(0, 0)), "scrolling back");
    await guard(cdp.send("HeapProfiler.collectGarbage"), "garbage collection");
    const heap = await guard(cdp.send("Runtime.getHeapUsage"), "reading the heap");
    const { dom, known } = await guard(page.evaluate(() => ({ dom: document.getElementsByTagName("*").length, known: window.__farm.getSnapshot().farm.ordered.length })), "counting nodes");
    await take();
    mark = Date.now();
    const row = { t: (Date.now() - started) / 1000, fps: steady.fps, p95: steady.p95, worst: steady.worst, scrollFps: scroll.fps, heapMB: heap.usedSize / 2 ** 20, dom, known };
    rows.push(row);
    console.log(
      `${row.t.toFixed(0).padStart(7)} ${row.fps.toFixed(1).padStart(5)} ${row.p95.toFixed(1).padStart(8)} ${row.worst.toFixed(1).padStart(9)} ${row.scrollFps.toFixed(1).padStart(11)} ${row.heapMB.toFixed(1).padStart(9)} ${String(row.dom).padStart(10)} ${String(row.known).padStart(8)}`,
    );
  }
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
}
if (rows.length > 0) {
  const fps = rows.map((r) => r.fps);
  const scroll = rows.map((r) => r.scrollFps);
  const n = rows.length;
  const mx = rows.reduce((a, r) => a + r.t, 0) / n;
  const my = rows.reduce((a, r) => a + r.heapMB, 0) / n;
  const slope = n > 1 ? rows.reduce((a, r) => a + (r.t - mx) * (r.heapMB - my), 0) / rows.reduce((a, r) => a + (r.t - mx) ** 2, 0) : 0;
  console.log(
    `summary: fps min ${Math.min(...fps).toFixed(1)} mean ${(fps.reduce((a, b) => a + b, 0) / n).toFixed(1)}; ` +
      `scrolling fps min ${Math.min(...scroll).toFixed(1)}; heap first ${rows[0].heapMB.toFixed(1)} MB, last ${rows[n - 1].heapMB.toFixed(1)} MB, ` +
      `max ${Math.max(...rows.map((r) => r.heapMB)).toFixed(1)} MB, trend ${(slope * 60).toFixed(2)} MB/min`,
  );
}
