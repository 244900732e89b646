/** A Map that forgets its least recently written entries beyond `capacity`. */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.capacity) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.map.delete(oldest.value);
    }
  }

  /** Replaces the value of a key already held, without making it more recent; a key not held is left out. */
  replace(key: K, value: V): void {
    if (this.map.has(key)) this.map.set(key, value);
  }

  /** The entries, least recently written first. */
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
