// What the security policy answers (security.ts). Security never changes a worker record, a lease
// or a trainer counter itself: it judges, and the owner of that state carries the verdict out —
// the gateway drops packets and bans, the replica assigner releases a refused result's lease.

import type { RejectCode } from '../../shared/protocol/messages.ts';

/** Go on as if security were not there. */
export type Accept = { kind: 'accept' };
/** Refuse the message with `code`; `ban` set: ban the worker (with that reason) right after. */
export type Refuse = { kind: 'refuse'; code: RejectCode; message: string; ban?: string };
/** Ban the worker: its results of the running step are discarded, its connection closed. */
export type Ban = { kind: 'ban'; reason: string };
/**
 * Check later: the message is re-computed off the event loop. Handle it again (every check
 * included) when `until` resolves true; false: the coordinator is closing, drop it. Never rejects.
 */
export type Later = { kind: 'later'; until: Promise<boolean> };

export type Verdict = Accept | Refuse | Ban | Later;

/** Per packet, besides accept / refuse / later: drop it silently, or close the connection (flood). */
export type PacketVerdict = Accept | Refuse | Later | { kind: 'drop' } | { kind: 'disconnect' };

export const ACCEPT: Accept = { kind: 'accept' };
