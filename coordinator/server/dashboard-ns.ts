// The `/dashboard` socket.io namespace: on connect a snapshot + history + recent log, then live
// pushes from the event bus (see shared/protocol/dashboard.ts and docs/protocol.md). Status
// snapshots are throttled to about one per second while something changes; an operator action
// (pause, resume, kick) pushes one at once, so every open dashboard shows it without polling.

import type { Server } from 'socket.io';
import { DASHBOARD_NAMESPACE } from '../../shared/protocol/messages.ts';
import type { EvalPoint, HistoryPoint, StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import type { EventBus } from './events.ts';

export function attachDashboard(io: Server, bus: EventBus, status: () => StatusSnapshot, history: () => readonly HistoryPoint[], evals: () => EvalPoint[]): () => void {
  const nsp = io.of(DASHBOARD_NAMESPACE);
  nsp.on('connection', (s) => {
    s.emit('snapshot', status());
    s.emit('history', history());
    for (const e of evals()) s.emit('eval', e);
    for (const e of bus.recent.slice(-100)) s.emit('log', e);
    // Dashboards only listen; anything they send is ignored.
  });
  let dirty = false;
  const mark = () => {
    dirty = true;
  };
  const onStep = (p: HistoryPoint) => {
    nsp.emit('step', p);
    mark();
  };
  const onEval = (e: EvalPoint) => nsp.emit('eval', e);
  const onWorker = (c: Parameters<typeof nsp.emit>[1]) => {
    nsp.emit('worker', c);
    mark();
  };
  const onLog = (e: unknown) => nsp.emit('log', e);
  bus.on('step', onStep);
  bus.on('eval', onEval);
  bus.on('worker', onWorker);
  bus.on('log', onLog);
  bus.on('checkpoint', mark);
  const push = () => {
    if (nsp.sockets.size === 0) return;
    dirty = false;
    nsp.emit('status', status());
  };
  // Rare and token-gated, so unthrottled: a paused run with no busy worker changes nothing else
  // that would mark the status dirty.
  const onAdmin = () => push();
  bus.on('admin', onAdmin);
  const timer = setInterval(() => {
    if (dirty) push();
  }, 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
    bus.off('step', onStep);
    bus.off('eval', onEval);
    bus.off('worker', onWorker);
    bus.off('log', onLog);
    bus.off('checkpoint', mark);
    bus.off('admin', onAdmin);
  };
}
