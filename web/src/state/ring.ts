// Fixed-size ring buffers for per-server sparklines: a server keeps its last N samples in
// typed arrays, so 1,000 servers cost a few hundred KB and no garbage per sample.

export class Ring {
  readonly capacity: number;
  private readonly data: Float64Array;
  private start = 0;
  private count = 0;

  constructor(capacity: number) {
    if (!(capacity >= 1)) throw new Error("a ring holds at least one value");
    this.capacity = Math.floor(capacity);
    this.data = new Float64Array(this.capacity);
  }

  get length(): number {
    return this.count;
  }

  push(value: number): void {
    const end = (this.start + this.count) % this.capacity;
    this.data[end] = value;
    if (this.count < this.capacity) this.count++;
    else this.start = (this.start + 1) % this.capacity;
  }

  /** The i-th oldest value (0 is the oldest). */
  at(i: number): number {
    if (i < 0 || i >= this.count) return NaN;
    return this.data[(this.start + i) % this.capacity];
  }

  last(): number {
    return this.count === 0 ? NaN : this.at(this.count - 1);
  }

  /** The values, oldest first. */
  toArray(): number[] {
    const out = new Array<number>(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.data[(this.start + i) % this.capacity];
    return out;
  }

  clear(): void {
    this.start = 0;
    this.count = 0;
  }
}

/** How many samples a card's sparklines show (one a second: the last minute). */
export const SPARK_POINTS = 60;

/** A server's recent samples: CPU %, memory bytes and requests/s, one per new sample. */
export class ServerSeries {
  readonly t = new Ring(SPARK_POINTS);
  readonly cpu = new Ring(SPARK_POINTS);
  readonly memory = new Ring(SPARK_POINTS);
  readonly rps = new Ring(SPARK_POINTS);
  /** Bumped on every push, so views can tell that something new arrived. */
  revision = 0;

  /** Appends a sample unless it is the one already appended last (same timestamp). */
  push(sampleMs: number, cpu: number, memory: number, rps: number): boolean {
    if (sampleMs <= 0 || (this.t.length > 0 && this.t.last() >= sampleMs)) return false;
    this.t.push(sampleMs);
    this.cpu.push(cpu);
    this.memory.push(memory);
    this.rps.push(rps);
    this.revision++;
    return true;
  }
}
