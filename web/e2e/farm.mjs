// Real farms for the browser tests: `farm up` (or its roles as separate processes) on free
// ports, with the debug binary (FARM_BIN overrides). Every wait is bounded.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
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

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function portFree(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A base port such that base+1 ..= base+n are free now. */
export async function freeRange(n) {
  for (let tries = 0; tries < 200; tries++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    let ok = true;
    for (let i = 1; i <= n && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error(`no free range of ${n} ports`);
}

/** A child process whose output is kept (for error messages) and watched for lines. */
export class Proc {
  constructor(name, args, env = {}) {
    this.name = name;
    this.output = "";
    this.child = spawn(farmBin(), args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: false });
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    const keep = (chunk) => {
      this.output += chunk.toString();
      if (this.output.length > 200_000) this.output = this.output.slice(-100_000);
    };
    this.child.stdout.on("data", keep);
    this.child.stderr.on("data", keep);
  }

  async waitFor(text, ms = 30_000) {
    const deadline = Date.now() + ms;
    while (!this.output.includes(text)) {
      if (this.child.exitCode !== null) throw new Error(`${this.name} exited before printing ${JSON.stringify(text)}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`${this.name} did not print ${JSON.stringify(text)} within ${ms} ms:\n${this.output}`);
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

/** `farm up --servers n` on free ports; resolves once every server is healthy. */
export async function farmUp(n, env = {}) {
  const controller = await freePort();
  const gateway = await freePort();
  const base = await freeRange(n);
  const proc = new Proc("farm up", [
    "up",
    "--servers", String(n),
    "--listen", `127.0.0.1:${controller}`,
    "--gateway-listen", `127.0.0.1:${gateway}`,
    "--node-base-port", String(base),
  ], env);
  await proc.waitFor("healthy in", 60_000);
  return { proc, url: `http://127.0.0.1:${gateway}`, controllerUrl: `http://127.0.0.1:${controller}`, base, stop: () => proc.stop() };
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
