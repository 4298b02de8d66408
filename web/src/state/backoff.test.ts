import { describe, expect, it } from "vitest";
import { Backoff } from "./backoff";

describe("Backoff", () => {
  it("doubles up to the cap, and starts over after a reset", () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, jitter: 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(b.attempt).toBe(6);
    b.reset();
    expect(b.next()).toBe(100);
  });

  it("jitters within [delay × (1 − jitter), delay]", () => {
    const low = new Backoff({ baseMs: 1000, jitter: 0.5, random: () => 0 });
    const high = new Backoff({ baseMs: 1000, jitter: 0.5, random: () => 1 });
    expect(low.next()).toBe(500);
    expect(high.next()).toBe(1000);
  });
});
