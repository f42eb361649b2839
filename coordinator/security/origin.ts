// Origin checks for the socket.io endpoints (engine.io `allowRequest`). A browser always sends
// Origin on WebSocket upgrades; a page from another site must not be able to drive a visitor's
// browser into our cluster (or read the dashboard stream). Allowed: no Origin (Node workers and
// other non-browser clients, which could forge it anyway: they are held by join tokens, validation
// and verification instead), the coordinator's own origin (same host:port), and --allowed-origins.

import type { IncomingMessage } from 'node:http';

export function originAllowed(origin: string | undefined, host: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined || origin === '') return true;
  if (allowed.includes('*')) return true;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return false;
  }
  if (host && o.host === host.toLowerCase()) return true;
  return allowed.some((a) => a.replace(/\/+$/, '').toLowerCase() === `${o.protocol}//${o.host}`);
}

export function originGuard(allowed: readonly string[]) {
  return (req: IncomingMessage, cb: (err: string | null | undefined, ok: boolean) => void): void => {
    const origin = req.headers.origin;
    const ok = originAllowed(typeof origin === 'string' ? origin : undefined, req.headers.host, allowed);
    cb(ok ? null : 'origin not allowed', ok);
  };
}
