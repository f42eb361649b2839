// The Redis side of a multi-coordinator run (--redis): the connection, the run's keys, and the
// Lua scripts that make the leader lease and its fencing atomic. Redis holds only small shared
// state (who leads, the fencing epoch, the committed checkpoint's name, heartbeats of the
// processes, the leader's status snapshot) and carries two pub/sub channels (the leader's events,
// operator commands); gradients and parameters never pass through it.
//
// Fencing: the lease value is `<epoch>|<processId>|<url>`; the epoch comes from INCR inside the
// acquire script, so every new leader has a larger one. Everything a leader writes that others
// act on (the committed checkpoint, its status) goes through FENCED_SET, which writes only while
// the lease still holds that exact value: a leader paused past its lease cannot commit.

import { Redis } from 'ioredis';
import { AppError } from '../../shared/errors.ts';

export interface RunKeys {
  leader: string;
  epoch: string;
  /** The newest checkpoint a fenced leader committed: {file, step, epoch}. */
  checkpoint: string;
  status: string;
  paused: string;
  /** Shared secret a gateway presents to the leader's /cluster namespace. */
  secret: string;
  procPrefix: string;
  events: string;
  admin: string;
}

export function runKeys(runName: string): RunKeys {
  const p = `vt:run:${runName}:`;
  return {
    leader: p + 'leader', epoch: p + 'epoch', checkpoint: p + 'checkpoint', status: p + 'status', paused: p + 'paused',
    secret: p + 'secret', procPrefix: p + 'proc:', events: p + 'events', admin: p + 'admin',
  };
}

/**
 * KEYS: leader, epoch. ARGV: "<id>|<url>", ttl ms, epoch floor. Returns nil, or {lease value,
 * 1 when the epoch counter was behind the floor: Redis lost its data (restarted without
 * persistence), so a previous leader may still believe its lease holds for up to a ttl}.
 */
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local e = redis.call('INCR', KEYS[2])
local f = tonumber(ARGV[3])
local forgot = 0
if e <= f then e = f + 1; forgot = 1; redis.call('SET', KEYS[2], e) end
local v = e .. '|' .. ARGV[1]
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return {v, forgot}`;

/** KEYS: leader. ARGV: token, ttl ms. 1 when still ours (and extended), else 0. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/** KEYS: leader, key. ARGV: token, value, ttl ms (0: none). 1 when written under the lease, else 0. */
const FENCED_SET = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) else redis.call('SET', KEYS[2], ARGV[2]) end
return 1`;

/** KEYS: leader. ARGV: token. Deletes the lease when it is ours. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface LeaseValue {
  epoch: number;
  id: string;
  url: string;
}

export function parseLease(v: string | null): LeaseValue | null {
  if (!v) return null;
  const [e, id, url] = v.split('|');
  const epoch = Number(e);
  return Number.isInteger(epoch) && id && url ? { epoch, id, url } : null;
}

/**
 * A client that fails fast while Redis is unreachable (no offline queue: a leader must learn at
 * once that it cannot renew) and reconnects on its own.
 */
export function connectRedis(url: string, name: string): Redis {
  return new Redis(url, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
    retryStrategy: (n) => Math.min(100 * n, 1_000),
    lazyConnect: true,
  });
}

/** Connect or throw ERR_REDIS naming the URL (the start of a --redis process). */
export async function openRedis(url: string, name: string): Promise<Redis> {
  const r = connectRedis(url, name);
  r.on('error', () => {}); // reconnects by itself; callers see failed commands
  try {
    await r.connect();
    await r.ping();
  } catch (e) {
    r.disconnect();
    throw new AppError('ERR_REDIS', `coordinator: cannot reach Redis at ${url.replace(/\/\/[^@/]*@/, '//***@')} (${(e as Error).message})`, 500,
      'start redis-server, or check --redis (redis://HOST:PORT)');
  }
  return r;
}

/** The run's scripted commands over one client. */
export class RunStore {
  constructor(readonly redis: Redis, readonly keys: RunKeys) {}

  async acquire(idUrl: string, ttlMs: number, floorEpoch: number): Promise<{ token: string; forgot: boolean } | null> {
    const r = (await this.redis.eval(ACQUIRE, 2, this.keys.leader, this.keys.epoch, idUrl, ttlMs, floorEpoch)) as [string, number] | null;
    return r ? { token: r[0], forgot: r[1] === 1 } : null;
  }

  async renew(token: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.eval(RENEW, 1, this.keys.leader, token, ttlMs)) === 1;
  }

  async fencedSet(token: string, key: string, value: string, ttlMs = 0): Promise<boolean> {
    return (await this.redis.eval(FENCED_SET, 2, this.keys.leader, key, token, value, ttlMs)) === 1;
  }

  async release(token: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.keys.leader, token);
  }

  async lease(): Promise<LeaseValue | null> {
    return parseLease(await this.redis.get(this.keys.leader));
  }

  /** The run's gateway secret, created by whoever asks first. */
  async secret(fresh: string): Promise<string> {
    await this.redis.set(this.keys.secret, fresh, 'NX');
    const s = await this.redis.get(this.keys.secret);
    if (!s) throw new AppError('ERR_REDIS', 'cluster: the run secret vanished from Redis', 500);
    return s;
  }
}
