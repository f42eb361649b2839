// Bans survive a coordinator restart: a real in-process coordinator on port 0 bans a sign-flipping
// worker client (caught by re-computation), is closed, and a new coordinator on the same run dir
// refuses the banned id at hello while an honest worker joins and trains. A damaged ban list is a
// warning naming the file and an empty list, never a failed start; a failed write leaves the
// previous list intact.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { io, type Socket } from 'socket.io-client';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { CoordinatorConfigInput } from '../../coordinator/config.ts';
import { BANS_FILE, BANS_FORMAT, BANS_FORMAT_VERSION, decodeBans, writeBans } from '../../coordinator/security/ban-file.ts';
import { isAppError } from '../../shared/errors.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import type { RejectMsg, WelcomeMsg } from '../../shared/protocol/messages.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { parseFault } from '../../worker-web/client/faults.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

function runDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bans-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A coordinator whose warn-level log lines are collected in `lines`. */
async function coordinator(dir: string, extra: Partial<CoordinatorConfigInput> = {}): Promise<{ c: CoordinatorHandle; lines: string[] }> {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
  const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: 8, evalEvery: 0, checkpointEvery: 0, adminToken: 'bans-admin', maxMicroBatch: 4, ...extra },
    { logger: pino({ level: 'warn' }, sink) });
  cleanups.push(() => c.close());
  return { c, lines };
}

async function client(url: string, name: string, fault = 'none'): Promise<WorkerClient> {
  const w = new WorkerClient({ url, host: await createNodeHost('cpu'), name, fault: parseFault(fault), seed: name.length, agent: 'bans-test', log: () => {} });
  await w.start();
  cleanups.push(() => w.stop('test over'));
  return w;
}

function raw(url: string): Socket {
  const s = io(url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true });
  cleanups.push(() => void s.close());
  return s;
}

const until = async (cond: () => boolean, ms: number, what: string) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

const hello = (extra: Record<string, unknown> = {}) => ({ protocol: 1, backend: 'cpu', adapter: { vendor: 'raw', architecture: 'x', description: 'raw', isSoftware: true }, limits: {}, userCapBytes: 2 ** 30, ...extra });

describe('bans survive a coordinator restart', () => {
  it('a worker banned by one coordinator is refused BANNED by the next one on the same run dir; an honest worker joins', async () => {
    const dir = runDir();
    const { c: first } = await coordinator(dir, { maxSteps: 6, resume: false, verifyRate: 1 });
    await client(first.url, 'honest-a');
    const liar = await client(first.url, 'liar', 'sign-flip');
    await until(() => (first.ctx.status().security?.banned.length ?? 0) > 0, 90_000, 'the liar banned');
    await liar.stoppedPromise();
    const liarId = first.ctx.status().workers.find((w) => w.name === 'liar')!.id;
    const reason = first.ctx.status().security!.banned[0].reason;
    expect(first.ctx.status().security!.banned.map((b) => b.id)).toEqual([liarId]);
    await first.close({ checkpoint: true }); // as on SIGTERM

    // On disk: the tagged, versioned list with the ban, and no temporary file left behind.
    const doc = JSON.parse(readFileSync(join(dir, BANS_FILE), 'utf8'));
    expect(doc).toMatchObject({ format: BANS_FORMAT, version: BANS_FORMAT_VERSION, bans: [{ id: liarId, reason }] });
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);

    // A new coordinator on the same run dir, resumed from the shutdown checkpoint.
    const { c: second, lines } = await coordinator(dir, { maxSteps: 12 });
    expect(second.resumedFrom).not.toBeNull();
    const resumedAt = second.trainer.step;
    const banned = second.ctx.status().security!.banned;
    expect(banned).toHaveLength(1);
    expect(banned[0]).toMatchObject({ id: liarId, reason });
    expect(banned[0].at).toBe(doc.bans[0].at);
    expect(lines.join('')).not.toMatch(/ban list/);

    const r = raw(second.url);
    const got: RejectMsg[] = [];
    let welcomed: WelcomeMsg | null = null;
    r.on('reject', (m: RejectMsg) => got.push(m));
    r.on('welcome', (m: WelcomeMsg) => (welcomed = m));
    r.emit('hello', hello({ resumeId: liarId }));
    await until(() => got.length > 0 || welcomed !== null, 5000, 'an answer to the banned hello');
    expect(welcomed).toBeNull();
    expect(got[0]).toMatchObject({ event: 'hello', code: 'BANNED' });
    await until(() => !r.connected, 5000, 'the banned connection closed');

    const honest = await client(second.url, 'honest-b');
    await until(() => second.trainer.step >= resumedAt + 2, 90_000, 'the honest worker to train 2 steps');
    const row = second.ctx.status().workers.find((w) => w.name === 'honest-b')!;
    expect(row.id).not.toBe(liarId);
    expect(row.tasksDone).toBeGreaterThan(0);
    expect(honest.stats.workerId).toBe(row.id);
  }, 180_000);

  it('a damaged ban list is a warning naming the file and an empty list (a copy kept); the coordinator starts', async () => {
    for (const junk of ['{"format":"vt-bans","version":1,"bans":[{"id":', '{"format":"other","version":1,"bans":[]}', '{"format":"vt-bans","version":99,"bans":[]}', '{"format":"vt-bans","version":1,"bans":[{"id":"w1-x"}]}']) {
      const dir = runDir();
      const file = join(dir, BANS_FILE);
      writeFileSync(file, junk);
      const { c, lines } = await coordinator(dir, { resume: false });
      const warn = lines.map((l) => JSON.parse(l) as { level: number; msg: string; file?: string }).find((l) => l.msg.includes('ban list'));
      expect(warn, junk).toBeDefined();
      expect(warn!.level).toBe(40);
      expect(warn!.file).toBe(file);
      expect(warn!.msg).toContain(file);
      expect(warn!.msg).toContain('starting with an empty ban list');
      expect(c.ctx.status().security!.banned).toEqual([]);
      // The damaged text is kept for the operator.
      expect(readFileSync(`${file}.corrupt`, 'utf8')).toBe(junk);
      const h = await fetch(`${c.url}/healthz`);
      expect(h.status).toBe(200);
      await c.close();
    }
  });

  it('an unreadable ban list (a directory in its place) is a warning too, not a crash', async () => {
    const dir = runDir();
    mkdirSync(join(dir, BANS_FILE));
    const { c, lines } = await coordinator(dir, { resume: false });
    expect(lines.join('')).toMatch(/cannot be read \(EISDIR\); starting with an empty ban list/);
    expect(c.ctx.status().security!.banned).toEqual([]);
  });

  it('a failed write leaves the previous ban list intact and no temporary file', () => {
    const dir = runDir();
    const file = join(dir, BANS_FILE);
    writeBans(file, [{ id: 'w1-good', reason: 'first', at: 1 }]);
    const before = readFileSync(file, 'utf8');
    expect(decodeBans(before, file)).toEqual([{ id: 'w1-good', reason: 'first', at: 1 }]);
    // The temporary file's path is taken by a directory: the open fails, as on a full disk.
    mkdirSync(`${file}.tmp-${process.pid}`);
    let err: unknown;
    try {
      writeBans(file, [{ id: 'w1-good', reason: 'first', at: 1 }, { id: 'w2-next', reason: 'second', at: 2 }]);
    } catch (e) {
      err = e;
    }
    expect(isAppError(err) && err.code).toBe('ERR_BANS_WRITE');
    expect((err as Error).message).toContain(file);
    expect(readFileSync(file, 'utf8')).toBe(before);
    rmSync(`${file}.tmp-${process.pid}`, { recursive: true });
    writeBans(file, [{ id: 'w2-next', reason: 'second', at: 2 }]);
    expect(decodeBans(readFileSync(file, 'utf8'), file).map((b) => b.id)).toEqual(['w2-next']);
    expect(existsSync(`${file}.tmp-${process.pid}`)).toBe(false);
  });
});
