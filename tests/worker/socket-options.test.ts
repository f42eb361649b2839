// A Node worker's socket takes the coordinator's biggest frames: a params frame of a model over
// ~26M parameters is above ws's default maxPayload (100 MiB), and before workerSocketOptions set
// maxPayload, GPT-2 small's ~500 MB params never reached a Node worker (the client closed with
// 1009 and no step ever ran; found by `npm run loadtest -- --preset gpt2`).
import { describe, it, expect, afterEach } from 'vitest';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io } from 'socket.io-client';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { workerSocketOptions } from '../../worker-web/client/worker-client.ts';

describe('worker socket options', () => {
  let http: HttpServer | null = null;
  let srv: Server | null = null;
  afterEach(async () => {
    await new Promise<void>((r) => (srv ? srv.close(() => r()) : r()));
    http = srv = null;
  });

  it('a Node worker receives a 110 MiB frame whole (ws alone would refuse it over 100 MiB)', async () => {
    http = createServer();
    srv = new Server(http, { parser: msgpackParser, maxHttpBufferSize: 1e6 });
    await new Promise<void>((r) => http!.listen(0, '127.0.0.1', r));
    const bytes = 110 * 2 ** 20;
    const payload = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i += 4096) payload[i] = (i >>> 12) & 0xff; // self-describing pages
    srv.on('connection', (s) => s.emit('params', { version: 7, params: payload }));
    const c = io(`http://127.0.0.1:${(http.address() as AddressInfo).port}`, workerSocketOptions(undefined));
    const got = await new Promise<{ version: number; params: Uint8Array } | string>((resolve) => {
      c.on('params', (m: { version: number; params: Uint8Array }) => resolve(m));
      c.on('disconnect', (why) => resolve(`disconnected: ${why}`));
      c.on('connect_error', (e) => resolve(`connect_error: ${e.message}`));
    });
    c.close();
    expect(typeof got).toBe('object');
    const m = got as { version: number; params: Uint8Array };
    expect(m.version).toBe(7);
    expect(m.params.byteLength).toBe(bytes);
    let bad = 0;
    for (let i = 0; i < bytes; i += 4096) if (m.params[i] !== ((i >>> 12) & 0xff)) bad++;
    expect(bad).toBe(0);
  }, 60_000);
});
