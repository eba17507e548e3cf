// matmul v1 — one output per thread: C[row, col] = Σ_k A[row, k] · B[k, col], read through the strides.
//
// Tiling: none. An 8 × 8 workgroup covers an 8 × 8 block of C; every thread walks all of k alone, so each value
// of A and B is loaded N (resp. M) times. The obvious kernel, kept as the baseline the others are validated and
// timed against (bench/matmul.ts); never the tuned choice.
import { BATCH_OFFSETS, PRELUDE, epilogue, type MatmulVariant } from './shared.ts';

const WG = 8;

export const v1: MatmulVariant = {
  tile: () => [WG, WG],
  loads: () => ({ aLoad: 'scalar', bLoad: 'scalar' }),
  directives: [],
  source: (_tm, _tn, options) => `${PRELUDE}
@compute @workgroup_size(${WG}, ${WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.y;
  let col = gid.x;
  let batch = gid.z;
  if (row >= u.M || col >= u.N) { return; }
  ${BATCH_OFFSETS}
  var acc = 0.0;
  for (var k = 0u; k < u.K; k++) {
    acc = fma(f32(a[aOff + row * u.sAm + k * u.sAk]), f32(b[bOff + k * u.sBk + col * u.sBn]), acc);
  }
  let at = (batch * u.M + row) * u.N + col;
  c[at] = ${epilogue('acc', 'col', 'at', options)};
}`,
};
