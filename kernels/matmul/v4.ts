// matmul v4 — the standard GPU design: tiles of A and B staged in workgroup memory.
//
// Tiling: a workgroup of 16 × 16 threads computes a (16·TM) × (16·TN) block of C. For each 16-wide slice of k
// all threads cooperatively copy the A block [16·TM × 16] and the B block [16 × 16·TN] into workgroup memory
// (k-major, so the inner loop reads contiguous rows), wait at a barrier, then each thread accumulates its
// TM × TN results from registers. Global loads go through the strides, so transposed and batched views work
// unchanged; out-of-range rows, columns and k load zeros.
//
// When it wins: on a discrete GPU, where it turns 16·TN (or 16·TM) global reads of each value into one. On
// lavapipe workgroup memory and barriers are costly (3–4 GFLOP/s, never chosen there); the tuner decides per
// adapter.
import { BATCH_OFFSETS, PRELUDE, range, storeBlock, type MatmulVariant } from './shared.ts';

/** Threads per workgroup side (16 × 16 = 256, WebGPU's guaranteed maximum) and the k-slice per tile. */
const SIDE = 16;
const BK = 16;

export const v4: MatmulVariant = {
  tile: (tm, tn) => [SIDE * tm, SIDE * tn],
  loads: () => ({ aLoad: 'scalar', bLoad: 'scalar' }),
  directives: [],
  source(tm, tn, options) {
    const [BM, BN, T] = [SIDE * tm, SIDE * tn, SIDE * SIDE];
    const rows = range(tm);
    const cols = range(tn);
    const acc = rows.flatMap((i) => cols.map((j) => `var c${i}_${j} = 0.0;`));
    const fmas = rows.flatMap((i) => cols.map((j) => `c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`));
    return `${PRELUDE}
var<workgroup> As: array<f32, ${BK * BM}>;
var<workgroup> Bs: array<f32, ${BK * BN}>;
@compute @workgroup_size(${SIDE}, ${SIDE})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  // No early return: every thread takes part in the copies and reaches the barriers.
  let blockRow = wid.y * ${BM}u;
  let blockCol = wid.x * ${BN}u;
  let row0 = blockRow + lid.y * ${tm}u;
  let col0 = blockCol + lid.x * ${tn}u;
  let batch = wid.z;
  ${BATCH_OFFSETS}
  ${acc.join('\n  ')}
  for (var k0 = 0u; k0 < u.K; k0 += ${BK}u) {
    for (var e = li; e < ${BK * BM}u; e += ${T}u) {
      let r = blockRow + e % ${BM}u;
      let k = k0 + e / ${BM}u;
      As[e] = select(0.0, f32(a[aOff + min(r, u.M - 1u) * u.sAm + min(k, u.K - 1u) * u.sAk]), r < u.M && k < u.K);
    }
    for (var e = li; e < ${BK * BN}u; e += ${T}u) {
      let col = blockCol + e % ${BN}u;
      let k = k0 + e / ${BN}u;
      Bs[e] = select(0.0, f32(b[bOff + min(k, u.K - 1u) * u.sBk + min(col, u.N - 1u) * u.sBn]), col < u.N && k < u.K);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      ${rows.map((i) => `let a${i} = As[kk * ${BM}u + lid.y * ${tm}u + ${i}u];`).join('\n      ')}
      ${cols.map((j) => `let b${j} = Bs[kk * ${BN}u + lid.x * ${tn}u + ${j}u];`).join('\n      ')}
      ${fmas.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${storeBlock(tm, tn, options).join('\n  ')}
}`;
  },
};
