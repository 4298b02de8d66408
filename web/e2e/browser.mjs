// Launches Debian's Chromium headless through playwright-core, with a fresh profile.
// Fails loudly (never skips) when Chromium is missing: install it with
// `apt-get install -y chromium`, or point CHROMIUM at another build.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}. The dashboard's browser tests need it: ` +
        "run `apt-get install -y chromium` (Debian), or set CHROMIUM=/path/to/chromium.",
    );
  }
  const profile = mkdtempSync(join(tmpdir(), "farm-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1440, height: 900 },
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
