// A multiset of numbers kept sorted, for a median that is asked after every result: add and remove
// are a binary search plus one memmove (O(n) bytes moved, no allocation, no sort); median() is
// O(1) and equals aggregate.ts median() of the same values. (Sorting the whole reference on every
// result was O(n log n) per result, O(n^2 log n) per step with n workers.)

export class SortedValues {
  private readonly v: number[] = [];

  get size(): number {
    return this.v.length;
  }

  /** Index of the first element >= x. */
  private lower(x: number): number {
    let lo = 0;
    let hi = this.v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.v[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(x: number): void {
    this.v.splice(this.lower(x), 0, x);
  }

  /** Remove one occurrence of x; false when there is none. */
  remove(x: number): boolean {
    const i = this.lower(x);
    if (i >= this.v.length || this.v[i] !== x) return false;
    this.v.splice(i, 1);
    return true;
  }

  clear(): void {
    this.v.length = 0;
  }

  median(): number {
    const s = this.v;
    if (s.length === 0) return 0;
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }
}
