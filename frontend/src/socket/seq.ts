/**
 * Remembers which live events were applied, so that the replay the server sends after a
 * reconnect (possibly out of order, possibly repeating) is applied once.
 *
 * `lastSeq` is the highest sequence number seen; it is what the client hands the server on
 * (re)connect. Seen numbers are kept in a bounded set; a number older than everything the set
 * still remembers counts as seen, so a very late duplicate is never applied twice.
 */
export class SeqTracker {
  private readonly seen = new Set<number>();
  private floor = -Infinity;
  private highest: number | null = null;

  constructor(private readonly capacity = 2000) {
    if (capacity < 1) throw new RangeError("capacity must be at least 1");
  }

  get lastSeq(): number | null {
    return this.highest;
  }

  /** True when `seq` has not been seen yet (and records it); false for a duplicate. */
  accept(seq: number): boolean {
    if (!Number.isFinite(seq)) return false;
    if (seq <= this.floor || this.seen.has(seq)) return false;
    this.seen.add(seq);
    if (this.highest === null || seq > this.highest) this.highest = seq;
    this.evict();
    return true;
  }

  has(seq: number): boolean {
    return seq <= this.floor || this.seen.has(seq);
  }

  get size(): number {
    return this.seen.size;
  }

  /**
   * What this tracker counts as seen, for the server's replay (`seen` in the handshake and in
   * `resume`): the numbers it remembers, consecutive ones as [first, last] ranges, and [0, floor]
   * for everything older. The server then leaves out, of the events just before `lastSeq` it
   * replays in case they committed late, those the console already has (in a busy inbox, most).
   */
  seenRanges(): (number | [number, number])[] {
    const out: (number | [number, number])[] = Number.isFinite(this.floor) ? [[0, this.floor]] : [];
    const sorted = [...this.seen].sort((a, b) => a - b);
    for (let k = 0; k < sorted.length; ) {
      const first = sorted[k]!;
      let last = first;
      while (k + 1 < sorted.length && sorted[k + 1] === last + 1) last = sorted[++k]!;
      out.push(first === last ? first : [first, last]);
      k += 1;
    }
    return out;
  }

  reset(): void {
    this.seen.clear();
    this.floor = -Infinity;
    this.highest = null;
  }

  /**
   * Forget the lowest numbers first, raising the floor below which everything counts as seen.
   * Eviction works in batches (down to three quarters of the capacity) so it sorts rarely.
   */
  private evict(): void {
    if (this.seen.size <= this.capacity) return;
    const keep = Math.max(1, Math.floor(this.capacity * 0.75));
    const sorted = [...this.seen].sort((a, b) => a - b);
    const drop = sorted.slice(0, this.seen.size - keep);
    for (const seq of drop) this.seen.delete(seq);
    this.floor = Math.max(this.floor, drop[drop.length - 1] ?? this.floor);
  }
}
