// The dashboard's live connection: socket.io `/dashboard` namespace, msgpack parser (the same
// one every coordinator socket uses, so both namespaces share one engine.io connection format),
// websocket transport only. The coordinator pushes; the page never polls.

import { io, type Socket } from 'socket.io-client';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { DASHBOARD_NAMESPACE } from '../../shared/protocol/messages.ts';

export type ConnState = 'connecting' | 'connected' | 'disconnected';

export interface LiveHandlers {
  onState(s: ConnState, detail?: string): void;
  /** Every pushed event, by name. */
  onEvent(name: string, payload: unknown): void;
}

export function connectLive(h: LiveHandlers, origin = location.origin): Socket {
  const socket = io(`${origin}${DASHBOARD_NAMESPACE}`, {
    parser: msgpackParser,
    transports: ['websocket'],
    reconnectionDelayMax: 5000,
  });
  h.onState('connecting');
  socket.on('connect', () => h.onState('connected'));
  socket.on('disconnect', (reason) => h.onState('disconnected', reason));
  socket.on('connect_error', (err) => h.onState('disconnected', err.message));
  socket.onAny((name: string, payload: unknown) => h.onEvent(name, payload));
  return socket;
}
