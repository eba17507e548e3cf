// matmul v3 — v2's register block spread across a subgroup: lanes share A through subgroupBroadcast.
//
// Tiling: a subgroup of 8 lanes computes an 8-row × 8·TN-column block of C; a workgroup of 64 threads (eight
// subgroups) stacks eight such blocks, 64 rows. At each k, lane L loads A[row0 + L, k] (one gather for all
// eight rows) and its own TN values of B; then eight subgroupBroadcast calls hand every lane each row's A
// value. Compared with v2 this trades 7 of every 8 A loads for register shuffles, which lavapipe does in one
// instruction. Lanes own columns col0 + L + 8j, so B loads are coalesced across the subgroup. Only the
// k-contiguous vector loads apply (a lane reads along k).
//
// Needs subgroups of exactly 8 lanes (kernels/policy.ts refuses it by name elsewhere). When it wins: the
// default on lavapipe (1.8× v2 at 1024²); TN = 4 at most shapes, TN = 8 for some weight gradients.
import { SUBGROUP_DIRECTIVES } from '../wgsl.ts';
import { BATCH_OFFSETS, PRELUDE, epilogue, range, type MatmulVariant } from './shared.ts';

/** The subgroup width the kernel is written for. */
export const V3_LANES = 8;
const S = V3_LANES;

export const v3: MatmulVariant = {
  tile: (_tm, tn) => [S * S, S * tn],
  loads: ({ aLoad, bLoad }) => ({ aLoad: aLoad === 'k4' ? 'k4' : 'scalar', bLoad: bLoad === 'k4' ? 'k4' : 'scalar' }),
  directives: SUBGROUP_DIRECTIVES,
  source(_tm, tn, options) {
    const { aLoad, bLoad } = options;
    const cols = range(tn);
    const rows = range(S);
    const kStep = aLoad === 'k4' || bLoad === 'k4' ? 4 : 1;
    const setup = [
      'let aRow = aOff + min(row0 + lane, u.M - 1u) * u.sAm;',
      ...cols.map((j) => `let bCol${j} = bOff + min(col0 + ${S * j}u, u.N - 1u) * u.sBn;`),
    ];
    for (const r of rows) for (const j of cols) setup.push(`var c${r}_${j} = 0.0;`);
    const body: string[] = [];
    if (aLoad === 'k4') body.push('let av = vec4<f32>(a[(aRow + k) / 4u]);');
    if (bLoad === 'k4') for (const j of cols) body.push(`let bv${j} = vec4<f32>(b[(bCol${j} + k) / 4u]);`);
    for (const kk of range(kStep)) {
      body.push(`let a${kk} = ${aLoad === 'k4' ? `av[${kk}]` : `f32(a[aRow + (k + ${kk}u) * u.sAk])`};`);
      for (const j of cols) body.push(`let b${kk}_${j} = ${bLoad === 'k4' ? `bv${j}[${kk}]` : `f32(b[bCol${j} + (k + ${kk}u) * u.sBk])`};`);
      for (const r of rows) {
        body.push(`let a${kk}_${r} = subgroupBroadcast(a${kk}, ${r}u);`);
        for (const j of cols) body.push(`c${r}_${j} = fma(a${kk}_${r}, b${kk}_${j}, c${r}_${j});`);
      }
    }
    const store: string[] = [];
    for (const r of rows) {
      store.push(`if (row0 + ${r}u < u.M) {`);
      store.push(`  let base${r} = (batch * u.M + row0 + ${r}u) * u.N;`);
      for (const j of cols) {
        const col = `col0 + ${S * j}u`;
        store.push(`  if (${col} < u.N) { c[base${r} + ${col}] = ${epilogue(`c${r}_${j}`, col, `base${r} + ${col}`, options)}; }`);
      }
      store.push('}');
    }
    return `${PRELUDE}
@compute @workgroup_size(${S * S})
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) li: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  // No early return: every lane of a subgroup must reach the broadcasts. Out-of-range rows and columns
  // load clamped (valid) addresses and are not stored.
  let row0 = (wid.y * ${S}u + li / ${S}u) * ${S}u;
  let col0 = wid.x * ${S * tn}u + lane;
  let batch = wid.z;
  ${BATCH_OFFSETS}
  ${setup.join('\n  ')}
  for (var k = 0u; k < u.K; k += ${kStep}u) {
    ${body.join('\n    ')}
  }
  ${store.join('\n  ')}
}`;
  },
};
