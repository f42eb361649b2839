// How a task handler's output leaves the worker: as an event on the connection the task came on.
// The fault wrappers (fault-wrappers.ts) wrap a Sender; the honest one just emits.

import type { ResultMsg } from '../../shared/protocol/messages.ts';

/** The connection a task came on, as its handler and the fault wrappers see it. */
export interface Channel {
  /** The connection is still the one the task came on and the client is running. */
  live(): boolean;
  /**
   * Emits on that connection if it is still up; false (and nothing queued) otherwise. Untyped on
   * purpose: the garbage fault sends malformed payloads and unknown events through it.
   */
  emit(event: string, payload: unknown): boolean;
}

/** A message a task handler sends. New roles add their result events here. */
export type Outgoing = { event: 'result'; payload: ResultMsg };

/** Sends one message; resolves false if it could not go out (connection gone, client left). */
export type Sender = (msg: Outgoing, ch: Channel) => Promise<boolean>;

export const honestSender: Sender = async (msg, ch) => ch.emit(msg.event, msg.payload);

/** The untyped emit of a socket.io client socket (the garbage fault sends what the types forbid). */
interface EmittingSocket {
  readonly connected: boolean;
  emit: unknown;
}

/** A Channel on the client's socket for the connection a task came on. */
export function socketChannel(c: {
  /** That connection is still the current one. */
  current: () => boolean;
  /** The client has not stopped. */
  running: () => boolean;
  socket: () => EmittingSocket | undefined;
}): Channel {
  return {
    live: () => c.current() && c.running(),
    emit: (event, payload) => {
      const s = c.socket();
      if (!c.current() || !s?.connected) return false;
      (s.emit as (ev: string, ...a: unknown[]) => void)(event, payload);
      return true;
    },
  };
}
