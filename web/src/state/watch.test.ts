import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Backoff } from "./backoff";
import { watchLoop, type Connection } from "./watch";
import type { WatchUpdate } from "./model";
import { server, update } from "./testdata";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A stream that yields `updates` then fails (or hangs forever when `hang`). */
function stream(updates: WatchUpdate[], end: "fail" | "hang" | "end") {
  return async function* (signal: AbortSignal): AsyncIterable<WatchUpdate> {
    for (const u of updates) yield u;
    if (end === "end") return;
    if (end === "fail") throw new Error("[unavailable] the controller is unavailable");
    await new Promise<void>((_, reject) => signal.addEventListener("abort", () => reject(new Error("aborted"))));
  };
}

describe("watchLoop", () => {
  it("reconnects with backoff after failures, resubscribes and goes live on the new snapshot", async () => {
    const attempts = [
      stream([], "fail"),
      stream([], "fail"),
      stream([update({ full: true, servers: [server(1)] })], "fail"),
      stream([update({ full: true, servers: [server(2)] })], "hang"),
    ];
    let opened = 0;
    const updates: WatchUpdate[] = [];
    const states: Connection[] = [];
    const stop = new AbortController();
    const done = watchLoop({
      open: (signal) => attempts[Math.min(opened++, attempts.length - 1)](signal),
      signal: stop.signal,
      backoff: new Backoff({ baseMs: 100, maxMs: 1000, jitter: 0 }),
      stallMs: 60_000,
      onUpdate: (u) => updates.push(u),
      onConnection: (c) => states.push(c),
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(opened).toBe(1);
    expect(states.at(-1)).toMatchObject({ state: "reconnecting", attempt: 1, error: expect.stringContaining("unavailable") });
    await vi.advanceTimersByTimeAsync(100); // first delay
    expect(opened).toBe(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(opened).toBe(2); // second delay is 200 ms
    await vi.advanceTimersByTimeAsync(1);
    expect(opened).toBe(3);
    expect(states.some((c) => c.state === "live")).toBe(true);
    // Live resets the backoff: the next failure waits the base delay again.
    expect(states.at(-1)).toMatchObject({ state: "reconnecting", attempt: 1 });
    await vi.advanceTimersByTimeAsync(100);
    expect(opened).toBe(4);
    expect(states.at(-1)?.state).toBe("live");
    expect(updates.map((u) => u.servers[0].id)).toEqual([1, 2]);
    stop.abort();
    await done;
    expect(states.at(-1)?.state).toBe("stopped");
  });

  it("treats a silent stream as dead", async () => {
    let opened = 0;
    const states: Connection[] = [];
    const stop = new AbortController();
    const done = watchLoop({
      open: (signal) => {
        opened++;
        return stream([update({ full: true })], "hang")(signal);
      },
      signal: stop.signal,
      backoff: new Backoff({ baseMs: 100, jitter: 0 }),
      stallMs: 3000,
      onUpdate: () => {},
      onConnection: (c) => states.push(c),
    });
    await vi.advanceTimersByTimeAsync(2999);
    expect(opened).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(states.at(-1)).toMatchObject({ state: "reconnecting", error: "no message for 3 s" });
    await vi.advanceTimersByTimeAsync(100);
    expect(opened).toBe(2);
    stop.abort();
    await done;
  });

  it("a stream that ends cleanly is reopened too", async () => {
    let opened = 0;
    const stop = new AbortController();
    const done = watchLoop({
      open: (signal) => {
        opened++;
        return stream([update({ full: true })], "end")(signal);
      },
      signal: stop.signal,
      backoff: new Backoff({ baseMs: 100, jitter: 0 }),
      onUpdate: () => {},
      onConnection: () => {},
    });
    await vi.advanceTimersByTimeAsync(350);
    expect(opened).toBe(4);
    stop.abort();
    await done;
  });
});
