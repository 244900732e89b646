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
