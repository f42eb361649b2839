// Bytes on the workers' sockets, counted at the socket (engine.io packets of the worker namespace's
// connections, as framed: msgpack bytes of every message, both modes): `wire.bytesIn` received
// from workers, `wire.bytesOut` sent to them. Heartbeats and control messages are included; they
// are a few dozen bytes each against the training payloads (tasks, results, params, rounds,
// deltas, updates) that dominate. /api/status reports them; npm run bench:comm divides by tokens.

interface EnginePacket {
  type?: string;
  data?: unknown;
}

interface CountedSocket {
  conn: { on(ev: 'packet' | 'packetCreate', fn: (p: EnginePacket) => void): unknown };
}

export class WireCounter {
  bytesIn = 0;
  bytesOut = 0;

  attach(socket: unknown): void {
    const conn = (socket as CountedSocket).conn;
    conn.on('packet', (p) => {
      if (p.type === 'message') this.bytesIn += sizeOf(p.data);
    });
    conn.on('packetCreate', (p) => {
      if (p.type === 'message') this.bytesOut += sizeOf(p.data);
    });
  }

  snapshot(): { bytesIn: number; bytesOut: number } {
    return { bytesIn: this.bytesIn, bytesOut: this.bytesOut };
  }
}

function sizeOf(d: unknown): number {
  if (typeof d === 'string') return Buffer.byteLength(d);
  if (ArrayBuffer.isView(d)) return d.byteLength;
  if (d instanceof ArrayBuffer) return d.byteLength;
  return 0;
}
