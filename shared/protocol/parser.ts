// A socket.io parser that encodes every packet as ONE msgpack message (msgpackr), so tensors
// travel as raw typed-array bytes. Pass `{ parser: msgpackParser }` to BOTH socket.io's Server and
// socket.io-client's io(); both ends must use it (the default parser is JSON + attachments).
//
// Typed arrays use msgpackr's `moreTypes` extension (ext 0x74 + a type code), so a Float32Array
// arrives as a Float32Array: one copy on encode (into the message), and on decode NONE when its
// bytes lie aligned in the received frame: the Decoder then returns a view into the frame (which
// it keeps alive); otherwise one copy (msgpackr's slice to an aligned buffer). To make that the
// common case, the Encoder aligns the largest typed array of an event's payload to its element
// size within the frame, with a packet field `pad` (a string of 0-7 characters that decoders
// ignore) placed before `data`. Use the websocket transport (polling would base64 binary frames).
//
// encodeOnce(payload): the coordinator sends the same parameters to every worker of a version;
// packing them is a full copy per send (~7 ms for `small`'s 4 MB). A payload marked with
// encodeOnce() is packed once per (namespace, event) and the same frame bytes go to every
// recipient. The bytes are exactly what the uncached path produces: the wire format is unchanged.

import { addExtension, Packr, Unpackr } from 'msgpackr';

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

// ---------------------------------------------------------------- typed arrays without copies

/** msgpackr's typed-array codes (its `typedArrays` list, same order). */
const TYPED: Array<{ new (b: ArrayBuffer, off?: number, len?: number): ArrayBufferView; BYTES_PER_ELEMENT: number; name: string }> = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array,
];
/** True only while our Decoder unpacks a frame it owns (other msgpackr users keep copies). */
let viewsIntoFrame = false;
/** Typed arrays decoded as views / as copies (bench and tests read these). */
export const decodeStats = { views: 0, copies: 0 };

// Replaces msgpackr's ext 0x74 reader (module-wide): identical results, except that inside
// Decoder.add an aligned typed array is a view of the frame instead of a copy.
addExtension({
  type: 0x74,
  unpack(data: Uint8Array) {
    const code = data[0];
    const C = TYPED[code];
    if (viewsIntoFrame && C) {
      const off = data.byteOffset + 1;
      const bytes = data.byteLength - 1;
      if (off % C.BYTES_PER_ELEMENT === 0 && bytes % C.BYTES_PER_ELEMENT === 0) {
        decodeStats.views++;
        return new C(data.buffer as ArrayBuffer, off, bytes / C.BYTES_PER_ELEMENT);
      }
    }
    if (viewsIntoFrame) decodeStats.copies++;
    // msgpackr's own behaviour: slice to a new, aligned ArrayBuffer.
    const buffer = Uint8Array.prototype.slice.call(data, 1).buffer;
    if (!C) {
      if (code === 16) return buffer;
      if (code === 17) return new DataView(buffer);
      throw new Error('Could not find typed array for code ' + code);
    }
    return new C(buffer);
  },
} as unknown as Parameters<typeof addExtension>[0]);

/** Typed arrays at least this large are worth aligning in a frame. */
const ALIGN_MIN_BYTES = 1024;

/** The largest typed array (element size > 1) among the payload's own fields, with its key. */
function largestTyped(payload: Record<string, unknown>): { key: string; a: ArrayBufferView & { BYTES_PER_ELEMENT: number } } | null {
  let best: { key: string; a: ArrayBufferView & { BYTES_PER_ELEMENT: number } } | null = null;
  for (const key of Object.keys(payload)) {
    const v = payload[key];
    if (!ArrayBuffer.isView(v) || v instanceof DataView) continue;
    const a = v as ArrayBufferView & { BYTES_PER_ELEMENT: number };
    if (a.BYTES_PER_ELEMENT > 1 && a.byteLength >= ALIGN_MIN_BYTES && (!best || a.byteLength > best.a.byteLength)) best = { key, a };
  }
  return best;
}

/** Bytes from the start of an ext 0x74 of `byteLength` data bytes to its first data byte. */
function extHeader(byteLength: number): number {
  return byteLength + 1 < 0x100 ? 4 : byteLength + 1 < 0x10000 ? 5 : 7;
}

/** Index of the only occurrence of `pat` in `buf`, or -1 (none, or more than one). */
function onlyIndexOf(buf: Uint8Array, pat: number[]): number {
  let found = -1;
  for (let i = buf.indexOf(pat[0]); i >= 0 && i <= buf.length - pat.length; i = buf.indexOf(pat[0], i + 1)) {
    let ok = true;
    for (let j = 1; j < pat.length && ok; j++) ok = buf[i + j] === pat[j];
    if (!ok) continue;
    if (found >= 0) return -1;
    found = i;
  }
  return found;
}

/**
 * Pack a packet so that the largest typed array of an event's payload starts at a multiple of its
 * element size within the frame. A probe pack with that array empty (cheap) shows where it would
 * start; a `pad` string before `data` moves it. Best effort: when the probe is ambiguous, the frame
 * is packed as is (the decoder then copies that array).
 */
function packAligned(p: Packet): Uint8Array {
  const d = p.data;
  const payload = Array.isArray(d) && d.length === 2 && typeof d[1] === 'object' && d[1] !== null && !ArrayBuffer.isView(d[1]) ? (d[1] as Record<string, unknown>) : null;
  const big = payload ? largestTyped(payload) : null;
  if (!big) return packr.pack(p);
  const C = big.a.constructor as unknown as { new (n: number): ArrayBufferView };
  const code = TYPED.findIndex((t) => t === (C as unknown));
  if (code < 0) return packr.pack(p);
  const probe: Packet & { pad: string } = { type: p.type, nsp: p.nsp, pad: '', data: [(d as unknown[])[0], { ...payload, [big.key]: new C(0) }] };
  if (p.id !== undefined) probe.id = p.id;
  const at = onlyIndexOf(packr.pack(probe), [0xc7, 0x01, 0x74, code]);
  if (at < 0) return packr.pack(p);
  const align = big.a.BYTES_PER_ELEMENT;
  const hdr = extHeader(big.a.byteLength);
  // Without the pad field the array starts 5 bytes earlier ('pad' key: 4 bytes, '': 1 byte).
  if ((at - 5 + hdr) % align === 0) return packr.pack(p);
  const k = (((align - ((at + hdr) % align)) % align) + align) % align;
  const padded: Packet & { pad: string } = { type: p.type, nsp: p.nsp, pad: 'x'.repeat(k), data: d };
  if (p.id !== undefined) padded.id = p.id;
  return packr.pack(padded);
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
    if (!payload) return [packAligned(p)];
    const key = `${p.type} ${p.nsp} ${d[0] as string}`;
    let byKey = this.frames.get(payload);
    const hit = byKey?.get(key);
    if (hit) return [hit];
    // No copy: packr's result is a view into its working buffer that later packs never write over
    // (they continue after it or in a new buffer). Keeping it pins that buffer for one version,
    // cheaper than a second full-size copy of a large model's parameters.
    const frame = packAligned(p);
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
      viewsIntoFrame = true;
      packet = unpackr.unpack(toBytes(chunk));
    } catch (e) {
      if (e instanceof ParserError) throw e;
      throw new ParserError(`socket.io msgpack parser: undecodable frame (${(e as Error).message})`);
    } finally {
      viewsIntoFrame = false;
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
