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
//   adamw(p, g, m, v, mask, n, b1, c1, b2,  one AdamW update in place on f32 p, m, v (mask: one
//         c2, ss, ib, eps, df)              byte per value, non-zero = decay), in float64 with
//                                           the operations of shared/optim/adamw.ts's loop in
//                                           its order, so the bits are the loop's: c1 = 1 - b1,
//                                           c2 = 1 - b2, ss = the step size, ib = 1/sqrt(bc2),
//                                           df = 1 - lr * wd

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

/** The f32x4 squares of the j-th 16 bytes at p (sumsq32's terms). */
function sq(j: number): string {
  return `(f32x4.mul (local.tee $x (v128.load offset=${16 * j} (local.get $p))) (local.get $x))`;
}

/** Each i32 lane of local `h` rotated left by 13 (no SIMD rotate: two shifts and an or). */
function rotl13(h: string): string {
  return `(v128.or (i32x4.shl (local.get ${h}) (i32.const 13)) (i32x4.shr_u (local.get ${h}) (i32.const 19)))`;
}

/** The f32x4 squares of local $v<j> (scan32's terms: the values are loaded once for the hash too). */
function sqv(j: number): string {
  return `(f32x4.mul (local.get $v${j}) (local.get $v${j}))`;
}

/**
 * sumsq32's and scan32's step over 32 floats: the 8 f32x4 squares `term(0..7)` summed in float32
 * as a tree into $s, then its halves added in float64 to $a (lanes 0-1) and $b (lanes 2-3).
 */
function blockOf32(term: (j: number) => string): string {
  return `(local.set $s (f32x4.add
        (f32x4.add
          (f32x4.add ${term(0)} ${term(1)})
          (f32x4.add ${term(2)} ${term(3)}))
        (f32x4.add
          (f32x4.add ${term(4)} ${term(5)})
          (f32x4.add ${term(6)} ${term(7)}))))
      (local.set $a (f64x2.add (local.get $a) ${promote('(local.get $s)', 'lo')}))
      (local.set $b (f64x2.add (local.get $b) ${promote('(local.get $s)', 'hi')}))`;
}

/**
 * AdamW on 4 values per iteration, as two f64x2 halves (lo: values 0-1, hi: 2-3), each exactly
 * the JavaScript loop's float64 expression:
 *   mi = b1 * m + c1 * g;  vi = b2 * v + (c2 * g) * g;  p' = p * (mask ? df : 1)
 *   p'' = p' - (ss * mi) / (sqrt(vi) * ib + eps)
 * then m, v, p stored as float32 (round to nearest, as a Float32Array store). p * 1 is p, so the
 * lanes without decay keep the loop's skipped multiply.
 */
function adamwFunc(): string {
  const half = (h: 'lo' | 'hi') => {
    const P = promote('(local.get $xp)', h), G = promote('(local.get $xg)', h);
    const M = promote('(local.get $xm)', h), V = promote('(local.get $xv)', h);
    // The decay lanes: mask bytes 0-1 (lo) or 2-3 (hi) of this group, widened to i64x2.
    const k = `(i64x2.extend_${h === 'lo' ? 'low' : 'high'}_i32x4_u (local.get $k))`;
    const H = h === 'lo' ? 'L' : 'H';
    return `
      (local.set $g${H} ${G})
      (local.set $m${H} (f64x2.add (f64x2.mul (local.get $B1) ${M}) (f64x2.mul (local.get $C1) (local.get $g${H}))))
      (local.set $v${H} (f64x2.add (f64x2.mul (local.get $B2) ${V}) (f64x2.mul (f64x2.mul (local.get $C2) (local.get $g${H})) (local.get $g${H}))))
      (local.set $p${H} (f64x2.mul ${P} (v128.bitselect (local.get $DF) (local.get $ONE) (i64x2.ne ${k} (v128.const i64x2 0 0)))))
      (local.set $p${H} (f64x2.sub (local.get $p${H})
        (f64x2.div (f64x2.mul (local.get $SS) (local.get $m${H}))
          (f64x2.add (f64x2.mul (f64x2.sqrt (local.get $v${H})) (local.get $IB)) (local.get $EPS)))))`;
  };
  const pack = (lo: string, hi: string) =>
    `(i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (f32x4.demote_f64x2_zero (local.get ${lo})) (f32x4.demote_f64x2_zero (local.get ${hi})))`;
  return `
  (func (export "adamw") (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $mask i32) (param $n i32)
    (param $b1 f64) (param $c1 f64) (param $b2 f64) (param $c2 f64) (param $ss f64) (param $ib f64) (param $eps f64) (param $df f64)
    (local $o i32) (local $end i32) (local $k v128)
    (local $xp v128) (local $xg v128) (local $xm v128) (local $xv v128)
    (local $gL v128) (local $mL v128) (local $vL v128) (local $pL v128) (local $gH v128) (local $mH v128) (local $vH v128) (local $pH v128)
    (local $B1 v128) (local $C1 v128) (local $B2 v128) (local $C2 v128) (local $SS v128) (local $IB v128) (local $EPS v128) (local $DF v128) (local $ONE v128)
    (local.set $B1 (f64x2.splat (local.get $b1)))
    (local.set $C1 (f64x2.splat (local.get $c1)))
    (local.set $B2 (f64x2.splat (local.get $b2)))
    (local.set $C2 (f64x2.splat (local.get $c2)))
    (local.set $SS (f64x2.splat (local.get $ss)))
    (local.set $IB (f64x2.splat (local.get $ib)))
    (local.set $EPS (f64x2.splat (local.get $eps)))
    (local.set $DF (f64x2.splat (local.get $df)))
    (local.set $ONE (f64x2.splat (f64.const 1)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $xp (v128.load (i32.add (local.get $p) (local.get $o))))
      (local.set $xg (v128.load (i32.add (local.get $g) (local.get $o))))
      (local.set $xm (v128.load (i32.add (local.get $m) (local.get $o))))
      (local.set $xv (v128.load (i32.add (local.get $v) (local.get $o))))
      ;; the 4 mask bytes of these 4 values, one i32 lane each
      (local.set $k (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u
        (v128.load32_zero (i32.add (local.get $mask) (i32.shr_u (local.get $o) (i32.const 2)))))))
      ${half('lo')}
      ${half('hi')}
      (v128.store (i32.add (local.get $m) (local.get $o)) ${pack('$mL', '$mH')})
      (v128.store (i32.add (local.get $v) (local.get $o)) ${pack('$vL', '$vH')})
      (v128.store (i32.add (local.get $p) (local.get $o)) ${pack('$pL', '$pH')})
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $next))))`;
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
      ${blockOf32(sq)}
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
      ${blockOf32(sqv)}
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
  ${adamwFunc()}
)`;
}
