// Constant-time secret comparison, shared by the admin bearer check (http/auth.ts) and the worker
// join token (server/gateway.ts). A leaf module: it imports nothing of the coordinator, so neither
// the HTTP layer nor the socket layer has to import the other for it.

import { createHash, timingSafeEqual } from 'node:crypto';

/** True when `given` equals `expected`; compares SHA-256 digests, so the length leaks nothing either. */
export function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
