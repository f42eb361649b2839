// Liveness measures a worker's silence on the coordinator's awake clock (awake-clock.ts): when the
// coordinator's own loop stalls (a long synchronous stretch, a GC pause, a starved process), the
// heartbeats its workers sent meanwhile sit unread in the socket buffers, and the stall must not
// be blamed on them. A worker that is really silent (SIGSTOPped) is still declared dead.
// The worker is a real `npm run worker` process, so it keeps sending while the coordinator stalls.
import { afterAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { tinyCoordinator, until } from '../worker/helpers.ts';
import { AwakeClock } from '../../coordinator/server/awake-clock.ts';

const root = new URL('../..', import.meta.url).pathname;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

const DEAD_AFTER_MS = 2000;

/** Block this process's event loop, as a long synchronous stretch of coordinator work would. */
function stallLoop(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy: no timer, no socket read, no heartbeat handled
  }
}

it('the awake clock counts only the lateness of its beats as stalled', () => {
  const c = new AwakeClock(500, 0);
  expect(c.beat(500)).toBe(0);
  expect(c.beat(1000)).toBe(0);
  expect(c.beat(4500)).toBe(3000); // fired 3 s late: the loop was stalled
  expect(c.now(4500)).toBe(1500);
  expect(c.beat(5000)).toBe(0);
  expect(c.now(5200)).toBe(2200);
});

it("a stall of the coordinator's loop longer than --dead-after-ms declares nobody dead; a stopped worker still dies", async () => {
  const c = await tinyCoordinator({ maxSteps: 0, heartbeatMs: 250, deadAfterMs: DEAD_AFTER_MS, verifyRate: 0 });
  cleanups.push(() => c.dispose());
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', c.url, '--backend', 'cpu', '--name', 'stall-test', '--quiet'], {
    cwd: root,
    stdio: 'ignore',
  });
  cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
  const me = () => [...c.hub.workers.byId.values()].find((w) => w.hello.name === 'stall-test');
  await until(() => (me()?.tasksDone ?? 0) >= 1, 60_000, 'the worker to join and finish a task');
  // Idle from here on (no tasks): the worker only heartbeats, so nothing but liveness is tested.
  c.hub.pause();
  await new Promise((r) => setTimeout(r, 500));

  stallLoop(2 * DEAD_AFTER_MS + 500);
  // Awake again: the buffered heartbeats are read; keep running past --dead-after-ms of awake time.
  await new Promise((r) => setTimeout(r, DEAD_AFTER_MS + 500));
  const deaths = () => c.bus.recent.filter((e) => e.kind === 'dead').map((e) => e.message);
  expect(deaths()).toEqual([]);
  expect(me()!.socket).not.toBeNull();
  expect(me()!.state).not.toBe('dead');

  // A worker that really stops talking is still found, after --dead-after-ms of awake silence.
  child.kill('SIGSTOP');
  cleanups.push(() => child.kill('SIGCONT'));
  const stoppedAt = Date.now();
  await until(() => deaths().length > 0, 4 * DEAD_AFTER_MS, 'the stopped worker to be declared dead');
  expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(DEAD_AFTER_MS - 300); // not before its silence is long enough
  expect(deaths()[0]).toMatch(/silent for \d+ ms/);
  expect(me()!.socket).toBeNull();
}, 90_000);
