// A socket.io parser that encodes every packet as ONE msgpack message (msgpackr), so tensors
// travel as raw typed-array bytes. Pass `{ parser: msgpackParser }` to BOTH socket.io's Server and
// socket.io-client's io(); both ends must use it (the default parser is JSON + attachments).
//
// Typed arrays use msgpackr's `moreTypes` extension (ext 0x74 + a type code), so a Float32Array
// arrives as a Float32Array: one copy on encode (into the message) and one on decode (msgpackr
// slices to get an aligned ArrayBuffer; the typed array then owns it, no further copies).
// Use the websocket transport (polling would base64 binary frames).
//
// encodeOnce(payload): the coordinator sends the same parameters to every worker of a version;
// packing them is a full copy per send (~7 ms for `small`'s 4 MB). A payload marked with
// encodeOnce() is packed once per (namespace, event) and the same frame bytes go to every
// recipient. The bytes are exactly what the uncached path produces: the wire format is unchanged.

import { Packr, Unpackr } from 'msgpackr';

// Standard msgpack maps (no msgpackr "records"), so any msgpack implementation can talk to us.
const packr = new Packr({ useRecords: false, moreTypes: true, int64AsType: 'number' });
const unpackr = new Unpackr({ useRecords: false, moreTypes: true, int64AsType: 'number' });

/** socket.io-parser packet types (same numbers as socket.io-parser's PacketType). */
export const PacketType = {
  CONNECT: 0,
  DISCONNECT: 1,
  EVENT: 2,
  ACK: 3,
  CONNECT_ERROR: 4,
  BINARY_EVENT: 5,
  BINARY_ACK: 6,
} as const;

export interface Packet {
  type: number;
  nsp: string;
  data?: unknown;
  id?: number;
}

/** Encode/decode one value with the same msgpack settings as the wire (for tests and tools). */
export function packValue(v: unknown): Uint8Array {
  return packr.pack(v);
}
export function unpackValue(buf: Uint8Array): unknown {
  return unpackr.unpack(buf);
}

/** Payloads whose encoding may be cached (by identity; see encodeOnce). */
const encodeOnceMarks = new WeakSet<object>();

/**
 * Mark `payload` so that `socket.emit(event, payload)` packs it once per (namespace, event) and
 * reuses that frame for every later emit of the same object. The payload, and the typed arrays in
 * it, must not change after its first emit: make a new object for new contents (entries are keyed
 * by identity in a WeakMap, so a dropped payload's frame is freed with it).
 */
export function encodeOnce<T extends object>(payload: T): T {
  encodeOnceMarks.add(payload);
  return payload;
}

export class Encoder {
  /** payload -> "type nsp event" -> frame, for encodeOnce() payloads. */
  private readonly frames = new WeakMap<object, Map<string, Uint8Array>>();

  encode(packet: Packet): Uint8Array[] {
    const p: Packet = { type: packet.type, nsp: packet.nsp };
    if (packet.data !== undefined) p.data = packet.data;
    if (packet.id !== undefined) p.id = packet.id;
    // Cacheable: an event without an ack id whose only argument is a marked payload; then the
    // frame depends on nothing but (type, nsp, event name, payload).
    const d: unknown[] = p.type === PacketType.EVENT && p.id === undefined && Array.isArray(p.data) ? p.data : [];
    const payload = d.length === 2 && typeof d[0] === 'string' && typeof d[1] === 'object' && d[1] !== null && encodeOnceMarks.has(d[1]) ? d[1] : null;
    if (!payload) return [packr.pack(p)];
    const key = `${p.type} ${p.nsp} ${d[0] as string}`;
    let byKey = this.frames.get(payload);
    const hit = byKey?.get(key);
    if (hit) return [hit];
    // No copy: packr's result is a view into its working buffer that later packs never write over
    // (they continue after it or in a new buffer). Keeping it pins that buffer for one version,
    // cheaper than a second full-size copy of a large model's parameters.
    const frame = packr.pack(p);
    if (!byKey) this.frames.set(payload, (byKey = new Map()));
    byKey.set(key, frame);
    return [frame];
  }
}

type Listener = (...args: any[]) => void;

/** Minimal emitter with the surface socket.io uses on its decoder. */
class Emitter {
  private listenersByEvent = new Map<string, Listener[]>();
  on(ev: string, fn: Listener): this {
    const l = this.listenersByEvent.get(ev) ?? [];
    l.push(fn);
    this.listenersByEvent.set(ev, l);
    return this;
  }
  addEventListener(ev: string, fn: Listener): this {
    return this.on(ev, fn);
  }
  once(ev: string, fn: Listener): this {
    const w: Listener = (...a) => {
      this.off(ev, w);
      fn(...a);
    };
    return this.on(ev, w);
  }
  off(ev?: string, fn?: Listener): this {
    if (ev === undefined) this.listenersByEvent.clear();
    else if (fn === undefined) this.listenersByEvent.delete(ev);
    else this.listenersByEvent.set(ev, (this.listenersByEvent.get(ev) ?? []).filter((f) => f !== fn));
    return this;
  }
  removeListener(ev?: string, fn?: Listener): this {
    return this.off(ev, fn);
  }
  removeAllListeners(ev?: string): this {
    return this.off(ev);
  }
  removeEventListener(ev?: string, fn?: Listener): this {
    return this.off(ev, fn);
  }
  emit(ev: string, ...args: unknown[]): this {
    for (const fn of [...(this.listenersByEvent.get(ev) ?? [])]) fn(...args);
    return this;
  }
  emitReserved(ev: string, ...args: unknown[]): this {
    return this.emit(ev, ...args);
  }
  listeners(ev: string): Listener[] {
    return [...(this.listenersByEvent.get(ev) ?? [])];
  }
  hasListeners(ev: string): boolean {
    return (this.listenersByEvent.get(ev)?.length ?? 0) > 0;
  }
}

export class ParserError extends Error {
  readonly code = 'ERR_PROTOCOL_PARSE';
}

function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk; // Node Buffer is a Uint8Array
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new ParserError(`socket.io msgpack parser: expected a binary frame, got ${typeof chunk} (hint: both ends must use shared/protocol/parser.ts and the websocket transport)`);
}

function isValidPacket(p: unknown): p is Packet {
  if (typeof p !== 'object' || p === null) return false;
  const o = p as Record<string, unknown>;
  if (typeof o.nsp !== 'string') return false;
  if (o.id !== undefined && !(Number.isInteger(o.id) && (o.id as number) >= 0)) return false;
  switch (o.type) {
    case PacketType.CONNECT:
      return o.data === undefined || (typeof o.data === 'object' && o.data !== null);
    case PacketType.DISCONNECT:
      return o.data === undefined;
    case PacketType.CONNECT_ERROR:
      return typeof o.data === 'string' || (typeof o.data === 'object' && o.data !== null);
    case PacketType.EVENT:
    case PacketType.BINARY_EVENT:
      return Array.isArray(o.data) && o.data.length > 0 && typeof o.data[0] === 'string';
    case PacketType.ACK:
    case PacketType.BINARY_ACK:
      return Array.isArray(o.data) && o.id !== undefined;
    default:
      return false;
  }
}

export class Decoder extends Emitter {
  add(chunk: unknown): void {
    let packet: unknown;
    try {
      packet = unpackr.unpack(toBytes(chunk));
    } catch (e) {
      if (e instanceof ParserError) throw e;
      throw new ParserError(`socket.io msgpack parser: undecodable frame (${(e as Error).message})`);
    }
    if (!isValidPacket(packet)) throw new ParserError('socket.io msgpack parser: invalid packet structure');
    this.emit('decoded', packet);
  }
  destroy(): void {
    this.removeAllListeners();
  }
}

/** The parser object for `new Server(http, { parser })` and `io(url, { parser })`. */
export const msgpackParser = { Encoder, Decoder, protocol: 5 };
