// The WebAssembly text of the gradient kernels (shared/simd/gradient-kernels.ts loads the binary
// built from it). Why WebAssembly: the coordinator runs two passes over every result's gradient
// (the finite scan + sum of squares, and the fold into the float64 accumulator); as plain
// JavaScript loops they are compute-bound at ~3-4 GB/s here (V8 does not vectorise), as 128-bit
// SIMD they run at memory speed (docs/scale.md "Ingest"). The fold keeps the exact order of
// additions of the JavaScript loop (aggregate.ts foldPending), so both give the same bits.
//
// Memory is imported (the caller sizes it: the accumulator lives in it, a gradient is copied in
// in small cache-resident chunks). Two builds of the same text: `local` (one thread's memory) and
// `shared` (the fold threads' accumulators, readable by every thread at step end).
//
// Exports (byte offsets into the memory; n counts floats and is a multiple of 4 (sumsq: of 8), the
// caller does any tail in JavaScript):
//   sumsq(p, n) -> f64                      sum of squares of f32[p .. p + 4n) in float64 (four
//                                           f64x2 sums: one would wait on its own adds); exact
//                                           to float64 rounding, the re-check of sumsq32
//   sumsq32(p, n) -> f64                    the same sum, n a multiple of 32: each 32 floats'
//                                           squares summed in float32 (8 per lane, a tree of
//                                           adds), then added in float64. About a quarter of
//                                           sumsq's instructions (the scan ran compute-bound at
//                                           ~11 GB/s in cache in float64); relative error <
//                                           3e-7. Overflows to Inf for |x| > ~6e18: the caller
//                                           re-checks a non-finite result with sumsq
//   scan32(p, n, st) -> f64                 sumsq32's sum AND, in the same pass over the chunk, a
//                                           keyed 256-bit hash of its bytes (the replay digest,
//                                           coordinator/security/replay.ts): two i32x4 states
//                                           at st, st + 16 (in and out, carried across chunks),
//                                           keys at st + 32, st + 48. Each 16 bytes x:
//                                           h = (rotl(h, 13) + (x ^ k)) * M (odd M; the rotation
//                                           moves the top bit, which add and multiply alone
//                                           keep linear: two flipped sign bits in a lane
//                                           cancelled), alternating the two
//                                           states; per 128 bytes h ^= h >> 15 and the states
//                                           swap with a lane rotation, so every lane depends on
//                                           every byte. Not cryptographic: keyed with a secret
//                                           random key per process, it tells bit-identical
//                                           re-sends from different gradients.
//   fold1..fold4(acc, g0.., n, t0..)        f64 acc[i] += t0*g0[i] + t1*g1[i] + ... (that order)
//   scale(acc, out, n, inv)                 f32 out[i] = f32(acc[i] * inv)

/** The f64x2 of lanes 0-1 (lo) or 2-3 (hi) of an f32x4, promoted. */
function promote(v: string, half: 'lo' | 'hi'): string {
  return half === 'lo'
    ? `(f64x2.promote_low_f32x4 ${v})`
    : `(f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 ${v} ${v}))`;
}

function foldFunc(k: number): string {
  const js = Array.from({ length: k }, (_, j) => j);
  // ((t0*g0 + t1*g1) + t2*g2) + t3*g3, as the JavaScript loop adds them.
  const sum = (half: 'lo' | 'hi') =>
    js.map((j) => `(f64x2.mul (local.get $T${j}) ${promote(`(local.get $V${j})`, half)})`).reduce((s, term) => `(f64x2.add ${s} ${term})`);
  return `
  (func (export "fold${k}") (param $acc i32) ${js.map((j) => `(param $g${j} i32)`).join(' ')} (param $n i32) ${js.map((j) => `(param $t${j} f64)`).join(' ')}
    (local $o i32) (local $a i32) (local $end i32) ${js.map((j) => `(local $T${j} v128) (local $V${j} v128)`).join(' ')}
    ${js.map((j) => `(local.set $T${j} (f64x2.splat (local.get $t${j})))`).join('\n    ')}
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $o) (i32.const 1))))
      ${js.map((j) => `(local.set $V${j} (v128.load (i32.add (local.get $g${j}) (local.get $o))))`).join('\n      ')}
      (v128.store (local.get $a) (f64x2.add (v128.load (local.get $a)) ${sum('lo')}))
      (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a)) ${sum('hi')}))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $next))))`;
}

/** The f32x4 squares of the 16 bytes at p + offset (sumsq32's terms). */
function sq(offset: number): string {
  return `(f32x4.mul (local.tee $x (v128.load offset=${offset} (local.get $p))) (local.get $x))`;
}

/** Each i32 lane of local `h` rotated left by 13 (no SIMD rotate: two shifts and an or). */
function rotl13(h: string): string {
  return `(v128.or (i32x4.shl (local.get ${h}) (i32.const 13)) (i32x4.shr_u (local.get ${h}) (i32.const 19)))`;
}

/** The f32x4 squares of local $v<j> (scan32's terms). */
function sqv(j: number): string {
  return `(f32x4.mul (local.get $v${j}) (local.get $v${j}))`;
}

export type KernelMemory = 'local' | 'shared';

/** Pages of 64 KiB: the most a wasm32 memory can have (4 GiB). */
export const MAX_PAGES = 65536;

export function gradientKernelsWat(memory: KernelMemory): string {
  return `(module
  (import "env" "mem" (memory 1 ${MAX_PAGES}${memory === 'shared' ? ' shared' : ''}))
  (func (export "sumsq") (param $p i32) (param $n i32) (result f64)
    (local $end i32) (local $a v128) (local $b v128) (local $c v128) (local $d v128) (local $x v128) (local $y v128) (local $h v128)
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $x (v128.load (local.get $p)))
      (local.set $y (v128.load offset=16 (local.get $p)))
      (local.set $h ${promote('(local.get $x)', 'lo')})
      (local.set $a (f64x2.add (local.get $a) (f64x2.mul (local.get $h) (local.get $h))))
      (local.set $h ${promote('(local.get $x)', 'hi')})
      (local.set $b (f64x2.add (local.get $b) (f64x2.mul (local.get $h) (local.get $h))))
      (local.set $h ${promote('(local.get $y)', 'lo')})
      (local.set $c (f64x2.add (local.get $c) (f64x2.mul (local.get $h) (local.get $h))))
      (local.set $h ${promote('(local.get $y)', 'hi')})
      (local.set $d (f64x2.add (local.get $d) (f64x2.mul (local.get $h) (local.get $h))))
      (local.set $p (i32.add (local.get $p) (i32.const 32)))
      (br $next)))
    (local.set $a (f64x2.add (f64x2.add (local.get $a) (local.get $b)) (f64x2.add (local.get $c) (local.get $d))))
    (f64.add (f64x2.extract_lane 0 (local.get $a)) (f64x2.extract_lane 1 (local.get $a))))
  (func (export "sumsq32") (param $p i32) (param $n i32) (result f64)
    (local $end i32) (local $a v128) (local $b v128) (local $s v128) (local $x v128)
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $s (f32x4.add
        (f32x4.add
          (f32x4.add ${sq(0)} ${sq(16)})
          (f32x4.add ${sq(32)} ${sq(48)}))
        (f32x4.add
          (f32x4.add ${sq(64)} ${sq(80)})
          (f32x4.add ${sq(96)} ${sq(112)}))))
      (local.set $a (f64x2.add (local.get $a) ${promote('(local.get $s)', 'lo')}))
      (local.set $b (f64x2.add (local.get $b) ${promote('(local.get $s)', 'hi')}))
      (local.set $p (i32.add (local.get $p) (i32.const 128)))
      (br $next)))
    (local.set $a (f64x2.add (local.get $a) (local.get $b)))
    (f64.add (f64x2.extract_lane 0 (local.get $a)) (f64x2.extract_lane 1 (local.get $a))))
  (func (export "scan32") (param $p i32) (param $n i32) (param $st i32) (result f64)
    (local $end i32) (local $a v128) (local $b v128) (local $s v128) (local $x v128)
    (local $A v128) (local $B v128) (local $K0 v128) (local $K1 v128) (local $M v128) (local $t v128)
    ${Array.from({ length: 8 }, (_, j) => `(local $v${j} v128)`).join(' ')}
    (local.set $A (v128.load (local.get $st)))
    (local.set $B (v128.load offset=16 (local.get $st)))
    (local.set $K0 (v128.load offset=32 (local.get $st)))
    (local.set $K1 (v128.load offset=48 (local.get $st)))
    (local.set $M (i32x4.splat (i32.const 0x9E3779B1)))
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      ${Array.from({ length: 8 }, (_, j) => `(local.set $v${j} (v128.load offset=${16 * j} (local.get $p)))`).join('\n      ')}
      (local.set $s (f32x4.add
        (f32x4.add
          (f32x4.add ${sqv(0)} ${sqv(1)})
          (f32x4.add ${sqv(2)} ${sqv(3)}))
        (f32x4.add
          (f32x4.add ${sqv(4)} ${sqv(5)})
          (f32x4.add ${sqv(6)} ${sqv(7)}))))
      (local.set $a (f64x2.add (local.get $a) ${promote('(local.get $s)', 'lo')}))
      (local.set $b (f64x2.add (local.get $b) ${promote('(local.get $s)', 'hi')}))
      ${[0, 2, 4, 6].map((j) => `(local.set $A (i32x4.mul (i32x4.add ${rotl13('$A')} (v128.xor (local.get $v${j}) (local.get $K0))) (local.get $M)))`).join('\n      ')}
      ${[1, 3, 5, 7].map((j) => `(local.set $B (i32x4.mul (i32x4.add ${rotl13('$B')} (v128.xor (local.get $v${j}) (local.get $K1))) (local.get $M)))`).join('\n      ')}
      (local.set $A (v128.xor (local.get $A) (i32x4.shr_u (local.get $A) (i32.const 15))))
      (local.set $B (v128.xor (local.get $B) (i32x4.shr_u (local.get $B) (i32.const 15))))
      (local.set $t (local.get $B))
      (local.set $B (i8x16.shuffle 4 5 6 7 8 9 10 11 12 13 14 15 0 1 2 3 (local.get $A) (local.get $A)))
      (local.set $A (local.get $t))
      (local.set $p (i32.add (local.get $p) (i32.const 128)))
      (br $next)))
    (v128.store (local.get $st) (local.get $A))
    (v128.store offset=16 (local.get $st) (local.get $B))
    (local.set $a (f64x2.add (local.get $a) (local.get $b)))
    (f64.add (f64x2.extract_lane 0 (local.get $a)) (f64x2.extract_lane 1 (local.get $a))))
  (func (export "scale") (param $acc i32) (param $out i32) (param $n i32) (param $inv f64)
    (local $o i32) (local $a i32) (local $end i32) (local $I v128)
    (local.set $I (f64x2.splat (local.get $inv)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $o) (i32.const 1))))
      (v128.store (i32.add (local.get $out) (local.get $o))
        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.mul (v128.load (local.get $a)) (local.get $I)))
          (f32x4.demote_f64x2_zero (f64x2.mul (v128.load offset=16 (local.get $a)) (local.get $I)))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $next))))
  ${[1, 2, 3, 4].map(foldFunc).join('\n')}
)`;
}
