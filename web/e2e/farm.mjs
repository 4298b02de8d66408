// Real farms for the browser tests: `farm up` (or its roles as separate processes), with the
// debug binary (FARM_BIN overrides). No port is guessed: every program binds port 0 and says
// which port it got, and these helpers read it from its output. Every wait is bounded.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../..", import.meta.url));

export function farmBin() {
  const candidates = [
    process.env.FARM_BIN,
    `${repo}target/x86_64-unknown-linux-gnu/debug/farm`,
    `${repo}target/debug/farm`,
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`No farm binary (looked at ${candidates.join(", ")}): run \`cargo build -p farm\` first, or set FARM_BIN.`);
  }
  return found;
}

/**
 * A random port below the kernel's ephemeral range (32768-60999), which no outgoing
 * connection takes: for a program that must come back on the same port after a restart.
 */
function lowPort() {
  return 10_000 + Math.floor(Math.random() * 22_000);
}

/**
 * `start(port)` on random ports below 32768 (see lowPort) until one is not taken, 5 attempts;
 * resolves to what `start` resolved to, with the port.
 */
export async function onLowPort(start, attempts = 5) {
  for (let attempt = 1; ; attempt++) {
    const port = lowPort();
    try {
      return { ...(await start(port)), port };
    } catch (e) {
      if (attempt >= attempts || !/Address already in use|cannot listen on/i.test(e.message)) throw e;
    }
  }
}

/**
 * A child process whose output is kept (for error messages) and watched for lines. Only whole
 * lines are kept, stdout's and stderr's each in one piece, so a line read is never cut short.
 */
export class Proc {
  constructor(name, args, env = {}) {
    this.name = name;
    this.output = "";
    this.child = spawn(farmBin(), args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: false });
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    // Set once the process has exited and all its output has been read.
    this.closed = false;
    this.child.once("close", () => {
      this.closed = true;
    });
    const keep = (text) => {
      this.output += text;
      if (this.output.length > 200_000) this.output = this.output.slice(-100_000);
    };
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let partial = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        const text = partial + chunk;
        const end = text.lastIndexOf("\n") + 1;
        partial = text.slice(end);
        keep(text.slice(0, end));
      });
      stream.on("end", () => partial && keep(`${partial}\n`));
    }
  }

  /** Waits for a line that matches `pattern` (a RegExp without the g flag) and returns its match. */
  async waitForLine(pattern, ms = 30_000) {
    const multiline = new RegExp(pattern.source, pattern.flags.includes("m") ? pattern.flags : `${pattern.flags}m`);
    const deadline = Date.now() + ms;
    for (;;) {
      const match = multiline.exec(this.output);
      if (match) return match;
      if (this.closed) throw new Error(`${this.name} exited before printing a line matching ${pattern}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`${this.name} did not print a line matching ${pattern} within ${ms} ms:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, then SIGKILL after `ms`. */
  async stop(ms = 10_000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * `farm up --servers n`, with the controller, the gateway and every node on a port the kernel
 * chooses; resolves once every server is healthy, with the URLs farm up printed. `gatewayListen`
 * puts the gateway elsewhere (`0.0.0.0:0`: beyond loopback, where changes need the token);
 * `args` go at the end of the command line.
 */
export async function farmUp(n, env = {}, { gatewayListen = "127.0.0.1:0", args = [] } = {}) {
  const proc = new Proc("farm up", [
    "up",
    "--servers", String(n),
    "--listen", "127.0.0.1:0",
    "--gateway-listen", gatewayListen,
    "--node-base-port", "0",
    ...args,
  ], env);
  try {
    // "farm: all N servers healthy in X s" (or "not every server turned healthy") comes after
    // the lines that name the controller and the gateway.
    const [verdict] = await proc.waitForLine(/^farm: (all \d+ servers healthy in|not every server turned healthy).*$/, 60_000);
    if (!verdict.includes("healthy in")) throw new Error(`farm up: ${verdict}\n${proc.output}`);
    const controllerUrl = announcedUrl(proc, "controller");
    const url = announcedUrl(proc, "gateway");
    return { proc, url, controllerUrl, stop: () => proc.stop() };
  } catch (e) {
    await proc.stop();
    throw e;
  }
}

/** The first word starting with http after "farm: <what>" in farm up's output. */
function announcedUrl(proc, what) {
  const line = new RegExp(`^farm: ${what}\\s(.*)$`, "m").exec(proc.output);
  const url = line?.[1].split(/\s+/).find((word) => word.startsWith("http"));
  if (!url) throw new Error(`farm up named no ${what} URL:\n${proc.output}`);
  return url;
}

/**
 * `farm controller` or `farm gateway` listening on `listen` (port 0: the kernel's choice), with
 * more `args`; resolves once it says where it listens, with its URL. Stops it if it fails.
 */
export async function startRole(role, listen, args = [], env = {}, ms = 20_000) {
  const proc = new Proc(role, [role, "--listen", listen, ...args], env);
  try {
    // "farm: controller listening on ADDR", "farm: gateway listening on http://ADDR (...)"
    const [, address] = await proc.waitForLine(new RegExp(`^farm: ${role} listening on (?:http://)?(\\S+)`), ms);
    return { proc, url: `http://${address}` };
  } catch (e) {
    await proc.stop();
    throw e;
  }
}

/** Polls `check` until it returns a truthy value, or throws `what` after `ms`. */
export async function eventually(what, ms, check, every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** The page must be the dashboard this checkout built: else the binary embeds an old one. */
export async function assertCurrentBuild(url) {
  const built = readFileSync(fileURLToPath(new URL("../dist/index.html", import.meta.url)), "utf8");
  const served = await (await fetch(`${url}/`, { headers: { accept: "text/html" } })).text();
  const asset = (html) => (/assets\/index-[\w-]+\.js/.exec(html) ?? [""])[0];
  assert.ok(asset(built), "web/dist/index.html names its script");
  assert.equal(
    asset(served),
    asset(built),
    "the gateway serves another build of the dashboard than web/dist: rebuild the binary (`cargo build -p farm`) after `npm run build`, or set FARM_DASHBOARD_DIR",
  );
}
