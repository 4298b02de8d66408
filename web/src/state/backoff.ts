// Reconnect backoff: exponential with jitter, capped, reset after a success.

export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  factor?: number;
  /** Share of each delay that is random (0: none, 1: anywhere from 0 to the delay). */
  jitter?: number;
  random?: () => number;
}

export class Backoff {
  private attempts = 0;
  readonly baseMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly jitter: number;
  private readonly random: () => number;

  constructor(o: BackoffOptions = {}) {
    this.baseMs = o.baseMs ?? 250;
    this.maxMs = o.maxMs ?? 5000;
    this.factor = o.factor ?? 2;
    this.jitter = Math.min(1, Math.max(0, o.jitter ?? 0.5));
    this.random = o.random ?? Math.random;
  }

  /** Failed attempts since the last reset. */
  get attempt(): number {
    return this.attempts;
  }

  /** The delay before the next attempt, in ms; counts an attempt. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * this.factor ** this.attempts);
    this.attempts++;
    return Math.round(ceiling * (1 - this.jitter) + ceiling * this.jitter * this.random());
  }

  reset(): void {
    this.attempts = 0;
  }
}
