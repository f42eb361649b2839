// `npm run bench:ingest [-- --presets tiny,small,gpt2 --reps N --threads K]`: in one process, what it costs
// the coordinator to take one result frame off the socket and fold it in, against memcpy measured
// in the same run. Ingest = the msgpack parser's Decoder.add (the bytes socket.io hands over for
// a websocket message) -> validateResult (schema, lengths, every value finite) -> the streaming
// token-weighted mean (MeanAggregator.add into the float64 accumulator). memcpy = a
// Float32Array.set of the same gradient bytes. Security's per-result checks (replay digest,
// gradient norm) are a policy on top and are measured apart ("withChecks", as the coordinator
// runs it: validateResult's scan also takes the replay digest, { digest: true }, and the norm
// comes out of the same pass, so the checks add the keyed hash to the scan, not a pass).
// `decodeValidateMBps`: decode + validateResult alone, the event loop's share of a result where
// enough fold threads take the folds (transferred). `--threads K` (K >= 1) also measures the
// coordinator's --fold-threads K path (the finite scan on this thread, which stages each gradient
// into a fold thread's memory for pools of up to STAGE_MAX_THREADS, the folds on K threads:
// coordinator/train/fold-threads.ts) with 4K frames per repetition, as `threaded`.
// Prints a table, then as the last line: { cases: [{ preset, bytes, memcpyMBps, ingestMBps, ratio }] }.

import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { l2Norm } from '../shared/optim/clip.ts';
import { parameterCount, presetConfig } from '../shared/model/config.ts';
import { decodeStats, Decoder, Encoder, PacketType, type Packet } from '../shared/protocol/parser.ts';
import { measuredNorm, validateResult } from '../shared/protocol/validate.ts';
import { AppError } from '../shared/errors.ts';
import { FOLD_BATCH, MeanAggregator } from '../coordinator/train/aggregate.ts';
import { gradientDigest } from '../coordinator/security/replay.ts';
import { ThreadedMeanAggregator } from '../coordinator/train/fold-threads.ts';

export interface IngestCase { preset: string; bytes: number; memcpyMBps: number; ingestMBps: number; ratio: number; withChecksMBps: number; decodeValidateMBps: number; reps: number; framesPerRep: number; decodedAsViews: number; decodedAsCopies: number }

function frameFor(paramCount: number, seed: number): Uint8Array {
  const grads = new Float32Array(paramCount);
  let s = 12345 + seed;
  for (let i = 0; i < paramCount; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    grads[i] = (s / 2 ** 32 - 0.5) * 1e-2;
  }
  const result = {
    taskId: 'n0.1.1', step: 1, version: 1, loss: 2.5, tokens: 512, grads, gradNorm: l2Norm(grads), nonFinite: 0,
    timings: { totalMs: 100, forwardMs: 40, backwardMs: 50 },
  };
  const packet: Packet = { type: PacketType.EVENT, nsp: '/', data: ['result', result] };
  const [frame] = new Encoder().encode(packet);
  // What ws hands to socket.io: a Buffer of its own (the frame assembled from the socket's chunks).
  return Buffer.from(frame);
}

function timeBest(reps: number, fn: () => void): number {
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

export function runIngestCase(preset: string, reps: number): IngestCase {
  const paramCount = parameterCount(presetConfig(preset));
  const bytes = paramCount * 4;
  const frames = Array.from({ length: FOLD_BATCH }, (_, i) => frameFor(paramCount, i));
  const agg = new MeanAggregator(paramCount);
  agg.begin(0);
  const decoder = new Decoder();
  let decoded: Packet | null = null;
  decoder.on('decoded', (p: Packet) => {
    decoded = p;
  });
  const ingest = (frame: Uint8Array, checks: boolean) => {
    decoder.add(frame);
    const raw = (decoded!.data as unknown[])[1];
    const v = validateResult(raw, { paramCount, digest: checks });
    if (!v.ok) throw new AppError('ERR_BENCH_INGEST', `bench:ingest: the frame did not validate: ${v.message}`);
    if (checks) {
      gradientDigest(v.value.grads);
      // What security.judgeResult does: the norm validateResult measured in its finite scan.
      if ((measuredNorm(v.value.grads) ?? l2Norm(v.value.grads)) < 0) throw new AppError('ERR_BENCH_INGEST', 'bench:ingest: negative norm');
    }
    agg.add(v.value.grads, v.value.tokens, 'w1');
    decoded = null;
  };
  const all = (checks: boolean) => {
    for (const f of frames) ingest(f, checks);
  };
  // The event loop's share where fold threads keep up (transferred, not staged): decode + validate.
  const decodeAndValidate = () => {
    for (const f of frames) {
      decoder.add(f);
      const v = validateResult((decoded!.data as unknown[])[1], { paramCount });
      if (!v.ok) throw new AppError('ERR_BENCH_INGEST', `bench:ingest: the frame did not validate: ${v.message}`);
      decoded = null;
    }
  };
  const src = new Float32Array(paramCount);
  for (let i = 0; i < paramCount; i++) src[i] = i * 1e-9;
  const dst = new Float32Array(paramCount);
  // Warm up (JIT, page faults), then best of `reps`, alternating so both see the same machine.
  dst.set(src);
  all(false);
  const v0 = decodeStats.views;
  const c0 = decodeStats.copies;
  let memcpyMs = Infinity;
  let ingestMs = Infinity;
  let checksMs = Infinity;
  let loopMs = Infinity;
  for (let r = 0; r < reps; r++) {
    memcpyMs = Math.min(memcpyMs, timeBest(1, () => dst.set(src)));
    ingestMs = Math.min(ingestMs, timeBest(1, () => all(false)) / frames.length);
    checksMs = Math.min(checksMs, timeBest(1, () => all(true)) / frames.length);
    loopMs = Math.min(loopMs, timeBest(1, decodeAndValidate) / frames.length);
  }
  const mbps = (ms: number) => Math.round(bytes / 1e6 / (ms / 1000));
  const c: IngestCase = {
    preset, bytes, memcpyMBps: mbps(memcpyMs), ingestMBps: mbps(ingestMs), ratio: 0, withChecksMBps: mbps(checksMs), decodeValidateMBps: mbps(loopMs), reps, framesPerRep: frames.length,
    decodedAsViews: decodeStats.views - v0, decodedAsCopies: decodeStats.copies - c0,
  };
  c.ratio = Math.round((c.ingestMBps / c.memcpyMBps) * 1000) / 1000;
  return c;
}

/** Frames per threaded repetition: three batches per thread, within ~6 GB of frame copies. */
export function runThreadedFrames(bytes: number, threads: number): number {
  const want = 3 * FOLD_BATCH * threads;
  const fits = Math.floor(6e9 / bytes);
  return Math.max(FOLD_BATCH * threads, Math.min(want, fits));
}

export interface ThreadedCase { preset: string; bytes: number; threads: number; frames: number; memcpyMBps: number; ingestMBps: number; ratio: number; withChecksMBps: number; finishMs: number; copies: number; staged: number }

/**
 * The coordinator's --fold-threads path: decode + validateResult (schema, finite scan + norm) on
 * this thread, then ThreadedMeanAggregator.add, which transfers the frame's buffer to one of
 * `threads` fold threads; timed from the first frame to the last one folded (flush). The frames
 * are detached by the transfer, so each repetition gets fresh copies (made before the clock runs)
 * of FOLD_BATCH distinct frames, cycled.
 *
 * `framesPerRep`: a step of many results is a pipeline (this thread scans result n + 1 while a
 * fold thread folds the batch before it), so a repetition of one batch per thread measured the
 * latency of a single batch, not that throughput (2026-12-03: 1 thread, 4 frames: scan all four,
 * then fold all four, nothing overlapped). runThreadedFrames sizes it.
 */
export function runThreadedCase(preset: string, reps: number, threads: number, framesPerRep: number): ThreadedCase {
  const paramCount = parameterCount(presetConfig(preset));
  const bytes = paramCount * 4;
  const distinct = Array.from({ length: Math.min(FOLD_BATCH, framesPerRep) }, (_, i) => frameFor(paramCount, i));
  const originals = Array.from({ length: framesPerRep }, (_, i) => distinct[i % distinct.length]);
  const agg = new ThreadedMeanAggregator(paramCount, threads);
  const decoder = new Decoder();
  let decoded: Packet | null = null;
  decoder.on('decoded', (p: Packet) => {
    decoded = p;
  });
  const rep = (checks: boolean) => {
    // Staged (the scan copies each gradient into a fold thread's memory): nothing is transferred,
    // the frames stay readable and are reused, as in runIngestCase. Else own buffers per
    // repetition, as ws hands them over (the transfer detaches them).
    const frames = agg.slotsPerThread > 0 ? originals : originals.map((f) => Buffer.from(f));
    const staged0 = agg.stagedAdds;
    agg.begin(0);
    const t = performance.now();
    for (const f of frames) {
      decoder.add(f);
      const raw = (decoded!.data as unknown[])[1];
      decoded = null;
      const v = validateResult(raw, { paramCount, digest: checks, stage: (g) => agg.stage(g) });
      if (!v.ok) throw new AppError('ERR_BENCH_INGEST', `bench:ingest: the frame did not validate: ${v.message}`);
      if (checks) {
        gradientDigest(v.value.grads);
        if ((measuredNorm(v.value.grads) ?? l2Norm(v.value.grads)) < 0) throw new AppError('ERR_BENCH_INGEST', 'bench:ingest: negative norm');
      }
      agg.add(v.value.grads, v.value.tokens, 'w1');
    }
    agg.flush();
    const ms = (performance.now() - t) / frames.length;
    if (agg.slotsPerThread > 0 && agg.stagedAdds - staged0 !== frames.length) {
      throw new AppError('ERR_BENCH_INGEST', `bench:ingest: ${frames.length - (agg.stagedAdds - staged0)} of ${frames.length} gradients were not staged (their frames were transferred: a repetition cannot reuse them)`);
    }
    return ms;
  };
  const src = new Float32Array(paramCount);
  for (let i = 0; i < paramCount; i++) src[i] = i * 1e-9;
  const dst = new Float32Array(paramCount);
  dst.set(src);
  rep(false);
  let memcpyMs = Infinity;
  let ingestMs = Infinity;
  let checksMs = Infinity;
  for (let r = 0; r < reps; r++) {
    memcpyMs = Math.min(memcpyMs, timeBest(1, () => dst.set(src)));
    ingestMs = Math.min(ingestMs, rep(false));
    checksMs = Math.min(checksMs, rep(true));
  }
  const t = performance.now();
  agg.finish(dst);
  const finishMs = performance.now() - t;
  void agg.close();
  const mbps = (ms: number) => Math.round(bytes / 1e6 / (ms / 1000));
  const c: ThreadedCase = { preset, bytes, threads, frames: framesPerRep, memcpyMBps: mbps(memcpyMs), ingestMBps: mbps(ingestMs), ratio: 0, withChecksMBps: mbps(checksMs), finishMs: Math.round(finishMs), copies: agg.copies, staged: agg.stagedAdds };
  c.ratio = Math.round((c.ingestMBps / c.memcpyMBps) * 1000) / 1000;
  return c;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { presets: { type: 'string' }, reps: { type: 'string' }, threads: { type: 'string' } }, strict: true });
  const presets = (values.presets ?? 'tiny,small,gpt2').split(',').map((s) => s.trim()).filter(Boolean);
  const reps = Number(values.reps ?? 7);
  if (!Number.isInteger(reps) || reps < 1 || reps > 1000) throw new AppError('ERR_BENCH_ARGS', `bench:ingest: --reps must be an integer in [1, 1000], got "${values.reps}"`);
  const threads = Number(values.threads ?? 0);
  if (!Number.isInteger(threads) || threads < 0 || threads > 64) throw new AppError('ERR_BENCH_ARGS', `bench:ingest: --threads must be an integer in [0, 64], got "${values.threads}"`);
  const cases: IngestCase[] = [];
  const threaded: ThreadedCase[] = [];
  const load0 = loadavg();
  for (const p of presets) {
    presetConfig(p); // throws a named error for an unknown preset
    // Fewer repetitions for the 0.5 GB frame of GPT-2 small.
    const c = runIngestCase(p, parameterCount(presetConfig(p)) > 1e7 ? Math.min(reps, 3) : reps * 5);
    cases.push(c);
    if (threads > 0) {
      const t = runThreadedCase(p, c.reps, threads, runThreadedFrames(c.bytes, threads));
      // Against the faster memcpy of the two cases: the threaded case's own is measured beside
      // threads freeing the last repetition's frames and read as low as 5.8 GB/s (12.3 in-loop,
      // 2026-12-03), which flattered its ratio.
      t.memcpyMBps = Math.max(t.memcpyMBps, c.memcpyMBps);
      t.ratio = Math.round((t.ingestMBps / t.memcpyMBps) * 1000) / 1000;
      threaded.push(t);
      process.stdout.write(`${t.preset.padEnd(6)} fold threads ${t.threads} (${t.frames} frames per rep): memcpy ${t.memcpyMBps} MB/s  ingest ${t.ingestMBps} MB/s  ratio ${t.ratio.toFixed(3)}  (with replay digest + norm: ${t.withChecksMBps} MB/s; step-end sum ${t.finishMs} ms; buffers copied ${t.copies}; folded from staging slots ${t.staged})\n`);
    }
    process.stdout.write(`${c.preset.padEnd(6)} ${(c.bytes / 1e6).toFixed(1).padStart(8)} MB  memcpy ${String(c.memcpyMBps).padStart(6)} MB/s  ingest ${String(c.ingestMBps).padStart(6)} MB/s  ratio ${c.ratio.toFixed(3)}  (with replay digest + norm: ${c.withChecksMBps} MB/s; decode + validate alone ${c.decodeValidateMBps} MB/s; typed arrays decoded as views ${c.decodedAsViews}, copied ${c.decodedAsCopies})\n`);
  }
  process.stdout.write(`load average ${load0.map((x) => x.toFixed(2)).join(' ')} -> ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  process.stdout.write(JSON.stringify({ cases, ...(threads > 0 ? { threaded } : {}), loadAverage: loadavg().map((x) => Math.round(x * 100) / 100) }) + '\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  main().catch((e) => {
    process.stderr.write(`${(e as { code?: string }).code ?? 'ERR'}: ${(e as Error).message}\n`);
    process.exit(2);
  });
}
