// The msgpack socket.io parser over real sockets: typed arrays arrive as the same typed arrays
// (not Buffers, not JSON arrays), bytes intact, both directions.
import { describe, it, expect, afterAll } from 'vitest';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io as ioClient } from 'socket.io-client';
import { msgpackParser, packValue, unpackValue, Decoder } from '../../shared/protocol/parser.ts';

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
});
