#!/usr/bin/env node
// Regenerates the TypeScript client from ../proto into a temporary folder and compares it
// with src/gen: exits 1 (and names the files) when the committed code is stale.
// `npm run generate` brings src/gen up to date.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const web = fileURLToPath(new URL("..", import.meta.url));
const temp = mkdtempSync(join(tmpdir(), "farm-gen-"));
const template = join(temp, "buf.gen.yaml");
writeFileSync(
  template,
  readFileSync(join(web, "buf.gen.yaml"), "utf8").replace(/out: src\/gen/, `out: ${join(temp, "gen")}`),
);

function files(dir) {
  const out = new Map();
  const walk = (d) => {
    let entries = [];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path, "utf8"));
    }
  };
  walk(dir);
  return out;
}

try {
  execFileSync(join(web, "node_modules", ".bin", "buf"), ["generate", "../proto/proto", "--template", template], {
    cwd: web,
    stdio: "inherit",
  });
  const fresh = files(join(temp, "gen"));
  const committed = files(join(web, "src", "gen"));
  const stale = [];
  for (const [name, text] of fresh) if (committed.get(name) !== text) stale.push(`changed or missing: src/gen/${name}`);
  for (const name of committed.keys()) if (!fresh.has(name)) stale.push(`no longer generated: src/gen/${name}`);
  if (fresh.size === 0) stale.push("buf generated nothing");
  if (stale.length > 0) {
    console.error("The generated client in web/src/gen is stale:\n  " + stale.join("\n  "));
    console.error("Run `npm --prefix web run generate` and commit the result.");
    process.exit(1);
  }
  console.log(`web/src/gen is up to date (${fresh.size} files).`);
} finally {
  rmSync(temp, { recursive: true, force: true });
}
