// Results within the turn's budget are handled at once (few workers: as before); past it they are
// queued and handled in later turns in arrival order, and a connection's queued results are handled
// before its bye/disconnect (flush).
import { describe, expect, it } from 'vitest';
import { BUDGET_MS, QUEUE_MAX_BYTES, ResultQueue } from '../../coordinator/server/result-queue.ts';

const spin = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

describe('result queue', () => {
  it('handles results at once within the budget, queues the rest in order, yields between turns', async () => {
    const q = new ResultQueue();
    const done: number[] = [];
    const a = {};
    q.run(a, () => done.push(1));
    expect(done).toEqual([1]); // at once
    q.run(a, () => {
      spin(BUDGET_MS + 5);
      done.push(2);
    });
    expect(done).toEqual([1, 2]);
    for (let i = 3; i <= 6; i++) q.run(a, () => {
      spin(BUDGET_MS / 2 + 1);
      done.push(i);
    });
    expect(done).toEqual([1, 2]); // the turn's budget is spent: queued
    expect(q.length).toBe(4);
    let timerRan = false;
    setTimeout(() => (timerRan = true), 0);
    await new Promise((r) => setImmediate(r));
    expect(done.length).toBeGreaterThan(2);
    expect(done.length).toBeLessThan(6); // not all in one turn
    await new Promise((r) => setTimeout(r, 200));
    expect(done).toEqual([1, 2, 3, 4, 5, 6]);
    expect(timerRan).toBe(true);
  });

  it("flush(conn) handles that connection's queued results now, in order, and leaves the others", () => {
    const q = new ResultQueue();
    const a = {};
    const b = {};
    const done: string[] = [];
    q.run(a, () => spin(BUDGET_MS + 2));
    q.run(a, () => done.push('a1'));
    q.run(b, () => done.push('b1'));
    q.run(a, () => done.push('a2'));
    q.flush(a);
    expect(done).toEqual(['a1', 'a2']);
    expect(q.length).toBe(1);
  });

  it('never holds more than QUEUE_MAX_BYTES: past it the oldest are handled until the new one fits', () => {
    const q = new ResultQueue();
    const a = {};
    const done: number[] = [];
    q.run(a, () => spin(BUDGET_MS + 2));
    const half = QUEUE_MAX_BYTES / 2;
    q.run(a, () => done.push(1), half);
    q.run(a, () => done.push(2), half);
    expect(done).toEqual([]);
    expect(q.queuedBytes).toBe(QUEUE_MAX_BYTES);
    q.run(a, () => done.push(3), 1);
    expect(done).toEqual([1]); // room for it made by handling the oldest, in order
    expect(q.queuedBytes).toBe(half + 1);
    q.run(a, () => done.push(4), QUEUE_MAX_BYTES + 1); // larger than the bound: all before it, then it
    expect(done).toEqual([1, 2, 3, 4]);
    expect(q.length).toBe(0);
  });
});
