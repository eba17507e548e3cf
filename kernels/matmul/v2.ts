// matmul v2 — register blocking: each thread of an 8 × 8 workgroup computes a TM × TN block of C.
//
// Tiling: a workgroup covers (8·TM) × (8·TN) of C. At each k step a thread loads TM values of A and TN of B
// and does TM·TN multiply-adds, so every loaded value is used TN (resp. TM) times from a register. No
// workgroup memory and no barriers: on lavapipe both are slow while the CPU's caches already serve the
// re-reads of neighbouring threads. The block is unrolled in the generated WGSL (every accumulator c{i}_{j} is
// a scalar register). Operands are loaded as vec4 where their layout allows (shared.ts ALoad / BLoad), four k
// steps at a time.
//
// When it wins: the default where subgroups are not 8 lanes wide (SwiftShader: 8 × 8); on lavapipe v3 is
// faster at most shapes, but the tuner keeps v2 where it measures better (small M or N).
import { BATCH_OFFSETS, PRELUDE, range, storeBlock, type MatmulVariant } from './shared.ts';

const WG = 8;

export const v2: MatmulVariant = {
  tile: (tm, tn) => [WG * tm, WG * tn],
  loads: (allowed) => allowed,
  directives: [],
  source(tm, tn, options) {
    const { aLoad, bLoad } = options;
    const rows = range(tm);
    const cols = range(tn);
    const kStep = aLoad === 'k4' || bLoad === 'k4' ? 4 : 1;
    const steps = range(kStep);
    const setup: string[] = [];
    const loads: string[] = [];
    // f32 expressions for A[row0 + i, k + kk] and B[k + kk, col0 + j] after the loads of one k step.
    let aAt: (i: number, kk: number) => string;
    let bAt: (kk: number, j: number) => string;

    if (aLoad === 'm4') {
      for (let q = 0; q < tm / 4; q++) setup.push(`let aGroup${q} = aOff + min(row0 + ${4 * q}u, u.M - 4u);`);
      for (const kk of steps) {
        for (let q = 0; q < tm / 4; q++) loads.push(`let am${kk}_${q} = vec4<f32>(a[(aGroup${q} + (k + ${kk}u) * u.sAk) / 4u]);`);
      }
      aAt = (i, kk) => `am${kk}_${Math.floor(i / 4)}[${i % 4}]`;
    } else {
      for (const i of rows) setup.push(`let aRow${i} = aOff + min(row0 + ${i}u, u.M - 1u) * u.sAm;`);
      if (aLoad === 'k4') {
        for (const i of rows) loads.push(`let ak${i} = vec4<f32>(a[(aRow${i} + k) / 4u]);`);
        aAt = (i, kk) => `ak${i}[${kk}]`;
      } else {
        for (const kk of steps) for (const i of rows) loads.push(`let as${kk}_${i} = f32(a[aRow${i} + (k + ${kk}u) * u.sAk]);`);
        aAt = (i, kk) => `as${kk}_${i}`;
      }
    }
    if (bLoad === 'n4') {
      for (let q = 0; q < tn / 4; q++) setup.push(`let bGroup${q} = bOff + min(col0 + ${4 * q}u, u.N - 4u);`);
      for (const kk of steps) {
        for (let q = 0; q < tn / 4; q++) loads.push(`let bn${kk}_${q} = vec4<f32>(b[(bGroup${q} + (k + ${kk}u) * u.sBk) / 4u]);`);
      }
      bAt = (kk, j) => `bn${kk}_${Math.floor(j / 4)}[${j % 4}]`;
    } else {
      for (const j of cols) setup.push(`let bCol${j} = bOff + min(col0 + ${j}u, u.N - 1u) * u.sBn;`);
      if (bLoad === 'k4') {
        for (const j of cols) loads.push(`let bk${j} = vec4<f32>(b[(bCol${j} + k) / 4u]);`);
        bAt = (kk, j) => `bk${j}[${kk}]`;
      } else {
        for (const kk of steps) for (const j of cols) loads.push(`let bs${kk}_${j} = f32(b[bCol${j} + (k + ${kk}u) * u.sBk]);`);
        bAt = (kk, j) => `bs${kk}_${j}`;
      }
    }
    for (const i of rows) for (const j of cols) setup.push(`var c${i}_${j} = 0.0;`);
    const fmas: string[] = [];
    for (const kk of steps) for (const i of rows) for (const j of cols) fmas.push(`c${i}_${j} = fma(${aAt(i, kk)}, ${bAt(kk, j)}, c${i}_${j});`);
    return `${PRELUDE}
@compute @workgroup_size(${WG}, ${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row0 = (wid.y * ${WG}u + lid.y) * ${tm}u;
  let col0 = (wid.x * ${WG}u + lid.x) * ${tn}u;
  let batch = wid.z;
  if (row0 >= u.M || col0 >= u.N) { return; }
  ${BATCH_OFFSETS}
  ${setup.join('\n  ')}
  for (var k = 0u; k < u.K; k += ${kStep}u) {
    ${loads.join('\n    ')}
    ${fmas.join('\n    ')}
  }
  ${storeBlock(tm, tn, options).join('\n  ')}
}`;
  },
};
