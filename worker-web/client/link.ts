// Link emulation (`--link UP/DOWN`, e.g. 10mbit/50mbit): paces a socket.io-client socket's sends
// and receives as a home connection would, so that the wall-clock effect of an uplink can be
// measured on loopback (npm run bench:comm). Each direction is one serial queue: a message of n
// bytes (its msgpack encoding, what goes on the wire) occupies the link for n * 8 / rate seconds
// after whatever was queued before it; heartbeats wait behind a big upload, as on a real uplink.
// Sends are delayed before they reach the socket; received events are held back until the link
// would have delivered them.

import { AppError } from '../../shared/errors.ts';
import { packValue } from '../../shared/protocol/parser.ts';

export interface LinkSpec {
  /** Bits per second, worker -> coordinator. */
  upBps: number;
  /** Bits per second, coordinator -> worker. */
  downBps: number;
}

const UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };

/** "10mbit/50mbit" -> { upBps: 1e7, downBps: 5e7 }. Throws ERR_WORKER_ARGS naming the problem. */
export function parseLink(s: string): LinkSpec {
  const m = /^\s*([0-9.]+)\s*(bit|kbit|mbit|gbit)\s*\/\s*([0-9.]+)\s*(bit|kbit|mbit|gbit)\s*$/i.exec(s);
  const up = m ? Number(m[1]) * UNITS[m[2].toLowerCase()] : NaN;
  const down = m ? Number(m[3]) * UNITS[m[4].toLowerCase()] : NaN;
  if (!(up > 0 && Number.isFinite(up) && down > 0 && Number.isFinite(down))) {
    throw new AppError('ERR_WORKER_ARGS', `worker: --link ${JSON.stringify(s)} is not UP/DOWN with units, e.g. 10mbit/50mbit (bit, kbit, mbit, gbit; both > 0)`, 400);
  }
  return { upBps: up, downBps: down };
}

/** One direction of the link: a serial queue at `bps`. */
export class PacedLink {
  private freeAt = 0;
  /** Bytes sent through it. */
  bytes = 0;
  /** Deliveries not yet made, in the order they entered the link. */
  private readonly pending: Array<{ due: number; deliver: () => void }> = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly bps: number) {}

  /** Ms from now until a message of `n` bytes has gone through (after those queued before it). */
  reserve(n: number, now = Date.now()): number {
    const start = Math.max(now, this.freeAt);
    this.freeAt = start + (n * 8 * 1000) / this.bps;
    this.bytes += n;
    return this.freeAt - now;
  }

  /**
   * Delivers a message of `n` bytes once the link would have carried it, strictly after those
   * queued before it. One timer per link, not one per message: timers armed in one turn start
   * from the loop's cached clock, so a big message whose size took milliseconds to measure could
   * fire after a small one queued behind it (a task overtaking its parameters).
   */
  send(n: number, deliver: () => void): void {
    this.pending.push({ due: Date.now() + this.reserve(n), deliver });
    if (!this.timer) this.arm();
  }

  private arm(): void {
    const head = this.pending[0];
    if (!head) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      while (this.pending.length > 0 && this.pending[0].due <= Date.now()) this.pending.shift()!.deliver();
      this.arm();
    }, Math.max(0, head.due - Date.now()));
  }
}

interface PatchableSocket {
  emit: (...a: unknown[]) => unknown;
  onevent?: (packet: { data?: unknown[] }) => void;
}

/** Paces `socket`'s emits (up) and incoming events (down). Order is kept in each direction. */
export function paceSocket(socket: unknown, spec: LinkSpec): { up: PacedLink; down: PacedLink } {
  const s = socket as PatchableSocket;
  const up = new PacedLink(spec.upBps);
  const down = new PacedLink(spec.downBps);
  const emit = s.emit.bind(s);
  s.emit = (...args: unknown[]) => {
    up.send(sizeOf(args), () => emit(...args));
    return s;
  };
  const onevent = s.onevent?.bind(s);
  if (!onevent) throw new AppError('ERR_LINK', 'link emulation: this socket.io-client has no onevent to pace', 500);
  s.onevent = (packet) => {
    down.send(sizeOf(packet.data ?? []), () => onevent(packet));
  };
  return { up, down };
}

function sizeOf(args: unknown[]): number {
  try {
    return packValue(args).byteLength;
  } catch {
    return 64;
  }
}
