// The Watch stream's life: open it, hand every message on, and when it breaks (gateway or
// controller restarting, network gone, or silence longer than the stall limit: the
// controller sends at least one message a second) open it again after a backoff. Each new
// stream starts with a full snapshot, which replaces what the dashboard knew.
import { Backoff } from "./backoff";
import type { WatchUpdate } from "./model";

export type ConnectionState = "connecting" | "live" | "reconnecting" | "stopped";

export interface Connection {
  state: ConnectionState;
  /** Failed attempts in a row. */
  attempt: number;
  /** When the next attempt starts (ms since the epoch), while reconnecting. */
  retryAt: number | null;
  /** Why the last stream ended. */
  error: string | null;
  /** When the state last changed. */
  since: number;
}

/** Opens one Watch stream; aborting `signal` must end it. */
export type OpenWatch = (signal: AbortSignal) => AsyncIterable<WatchUpdate>;

export interface WatchLoopOptions {
  open: OpenWatch;
  signal: AbortSignal;
  backoff?: Backoff;
  /** Silence after which the stream counts as dead, in ms. */
  stallMs?: number;
  now?: () => number;
  onUpdate: (update: WatchUpdate) => void;
  onConnection: (connection: Connection) => void;
}

export const STALL_MS = 5000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

export function describeError(e: unknown): string {
  if (e instanceof Error) {
    // ConnectError's message reads "[unavailable] the controller is unavailable ...".
    return e.message || e.name;
  }
  return String(e);
}

/** Runs until `signal` is aborted. */
export async function watchLoop(o: WatchLoopOptions): Promise<void> {
  const backoff = o.backoff ?? new Backoff();
  const stallMs = o.stallMs ?? STALL_MS;
  const now = o.now ?? Date.now;
  let everLive = false;
  const report = (state: ConnectionState, error: string | null, retryAt: number | null = null) =>
    o.onConnection({ state, attempt: backoff.attempt, retryAt, error, since: now() });

  while (!o.signal.aborted) {
    report(everLive || backoff.attempt > 0 ? "reconnecting" : "connecting", null);
    const attempt = new AbortController();
    const stop = () => attempt.abort();
    o.signal.addEventListener("abort", stop, { once: true });
    let stalled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        attempt.abort();
      }, stallMs);
    };
    let error = "the stream ended";
    try {
      arm();
      let live = false;
      for await (const update of o.open(attempt.signal)) {
        arm();
        if (!live) {
          live = true;
          everLive = true;
          backoff.reset();
          report("live", null);
        }
        o.onUpdate(update);
      }
    } catch (e) {
      error = describeError(e);
    } finally {
      clearTimeout(timer);
      o.signal.removeEventListener("abort", stop);
    }
    if (o.signal.aborted) break;
    if (stalled) error = `no message for ${stallMs / 1000} s`;
    const delay = backoff.next();
    report("reconnecting", error, now() + delay);
    await sleep(delay, o.signal);
  }
  o.onConnection({ state: "stopped", attempt: backoff.attempt, retryAt: null, error: null, since: now() });
}
