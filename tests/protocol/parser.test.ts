// The msgpack socket.io parser over real sockets: typed arrays arrive as the same typed arrays
// (not Buffers, not JSON arrays), bytes intact, both directions.
import { describe, it, expect, afterAll } from 'vitest';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io as ioClient } from 'socket.io-client';
import { msgpackParser, packValue, unpackValue, Decoder, Encoder, encodeOnce, PacketType } from '../../shared/protocol/parser.ts';

describe('msgpack parser', () => {
  it('round-trips typed arrays as typed arrays with a single aligned buffer each', () => {
    const f = new Float32Array([1.5, -2, 3.25, Number.MIN_VALUE]);
    const out = unpackValue(packValue({ a: 1, f, i: new Int32Array([7, -8]), m: new Uint8Array([1, 0, 1]) })) as any;
    expect(out.f).toBeInstanceOf(Float32Array);
    expect(Array.from(out.f)).toEqual(Array.from(f));
    expect(out.f.byteOffset).toBe(0); // decoded into its own aligned buffer, usable without a copy
    expect(out.f.buffer.byteLength).toBe(f.byteLength);
    expect(out.i).toBeInstanceOf(Int32Array);
    expect(out.m).toBeInstanceOf(Uint8Array);
    // Raw bytes on the wire: 4 bytes per float plus a small header, never JSON/base64.
    const big = new Float32Array(10_000).fill(0.1);
    expect(packValue({ g: big }).byteLength).toBeLessThan(big.byteLength + 32);
  });

  it('rejects frames that are not socket.io packets', () => {
    const d = new Decoder();
    expect(() => d.add('42["x"]')).toThrow(/binary frame/);
    expect(() => d.add(packValue({ type: 9, nsp: '/' }))).toThrow(/invalid packet/);
    expect(() => d.add(new Uint8Array([0xc1]))).toThrow(/undecodable|invalid/);
  });

  it('encodeOnce: packs a payload once per (namespace, event), byte-identical to the uncached frame', () => {
    const enc = new Encoder();
    const params = new Float32Array(50_000).map((_, i) => Math.sin(i));
    const plain = { version: 3, step: 3, params };
    const marked = encodeOnce({ version: 3, step: 3, params });
    const pkt = (payload: object, nsp = '/', ev = 'params', id?: number) => ({ type: PacketType.EVENT, nsp, data: [ev, payload], ...(id === undefined ? {} : { id }) });
    const reference = enc.encode(pkt(plain))[0];
    const first = enc.encode(pkt(marked))[0];
    // The wire format is unchanged: same bytes as without the mark, and it decodes the same.
    expect(Buffer.from(first).equals(Buffer.from(reference))).toBe(true);
    const back = unpackValue(first) as { data: [string, { params: Float32Array }] };
    expect(Buffer.from(back.data[1].params.buffer).equals(Buffer.from(params.buffer))).toBe(true);
    // Cached: a later emit of the same object gets the very same frame, not a new pack.
    expect(enc.encode(pkt(marked))[0] === first).toBe(true);
    // Unmarked payloads are packed every time; other namespaces/events and acks are keyed apart.
    expect(enc.encode(pkt(plain))[0] === reference).toBe(false);
    const otherNsp = enc.encode(pkt(marked, '/dashboard'))[0];
    expect(otherNsp === first).toBe(false);
    expect((unpackValue(otherNsp) as { nsp: string }).nsp).toBe('/dashboard');
    expect((unpackValue(enc.encode(pkt(marked, '/', 'other'))[0]) as { data: [string] }).data[0]).toBe('other');
    const withAck = enc.encode(pkt(marked, '/', 'params', 7))[0];
    expect((unpackValue(withAck) as { id: number }).id).toBe(7);
    expect(enc.encode(pkt(marked, '/', 'params', 8))[0] === withAck).toBe(false);
    // The frame is a snapshot of its own: later in-place changes do not leak into it, and a
    // new object (what the hub makes per version) carries the new values.
    params[0] = 42;
    expect((unpackValue(enc.encode(pkt(marked))[0]) as typeof back).data[1].params[0]).toBe(Math.sin(0));
    const next = encodeOnce({ version: 4, step: 4, params });
    expect((unpackValue(enc.encode(pkt(next))[0]) as typeof back).data[1].params[0]).toBe(42);
  });

  const servers: Server[] = [];
  afterAll(() => servers.forEach((s) => s.close()));

  it('carries Float32Array both ways over a real socket.io connection', async () => {
    const http = createServer();
    const srv = new Server(http, { parser: msgpackParser, maxHttpBufferSize: 1e8 });
    servers.push(srv);
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as AddressInfo).port;
    srv.on('connection', (s) => {
      s.on('echo', (m: { g: Float32Array }) => {
        s.emit('echoed', { isF32: m.g instanceof Float32Array, sum: m.g.reduce((a, b) => a + b, 0), g: m.g });
      });
    });
    const c = ioClient(`http://127.0.0.1:${port}`, { parser: msgpackParser, transports: ['websocket'] });
    const g = new Float32Array(300_000);
    for (let i = 0; i < g.length; i++) g[i] = (i % 7) - 3;
    const got = await new Promise<any>((resolve) => {
      c.on('echoed', resolve);
      c.emit('echo', { g });
    });
    c.close();
    expect(got.isF32).toBe(true);
    expect(got.g).toBeInstanceOf(Float32Array);
    expect(got.g.length).toBe(g.length);
    expect(got.g[12345]).toBe(g[12345]);
  });

  it('delivers one encodeOnce payload, emitted to each socket in turn, intact to every client', async () => {
    const http = createServer();
    const srv = new Server(http, { parser: msgpackParser, maxHttpBufferSize: 1e8 });
    servers.push(srv);
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as AddressInfo).port;
    const params = new Float32Array(200_000).map((_, i) => (i % 13) * 0.25 - 1.5);
    let msg = encodeOnce({ version: 1, step: 1, params });
    const clients = [0, 1, 2].map(() => ioClient(`http://127.0.0.1:${port}`, { parser: msgpackParser, transports: ['websocket'], forceNew: true }));
    const got: Array<Array<{ version: number; params: Float32Array }>> = clients.map(() => []);
    clients.forEach((c, i) => c.on('params', (m: { version: number; params: Float32Array }) => void got[i].push(m)));
    await Promise.all(clients.map((c) => new Promise<void>((r) => c.on('connect', () => r()))));
    const waitFor = (n: number) => new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const poll = () => (got.every((g) => g.length >= n) ? resolve() : Date.now() - t0 > 10_000 ? reject(new Error(`params #${n} not received`)) : setTimeout(poll, 10));
      poll();
    });
    for (const s of srv.sockets.sockets.values()) s.emit('params', msg);
    await waitFor(1);
    params[5] = 99; // the next "version": updated in place, new message object
    msg = encodeOnce({ version: 2, step: 2, params });
    for (const s of srv.sockets.sockets.values()) s.emit('params', msg);
    await waitFor(2);
    clients.forEach((c) => c.close());
    for (const g of got) {
      expect(g.map((m) => m.version)).toEqual([1, 2]);
      expect(g[0].params).toBeInstanceOf(Float32Array);
      expect(g[0].params[5]).toBe((5 % 13) * 0.25 - 1.5);
      expect(Buffer.from(g[1].params.buffer, g[1].params.byteOffset, g[1].params.byteLength).equals(Buffer.from(params.buffer))).toBe(true);
    }
  });
});
