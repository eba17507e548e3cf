// Batched matrix multiplication C[b] = A[b] · B[b] (+ bias, then an activation), both operands read through
// arbitrary strides — a transposed operand is just a view, never a copy — with broadcast batch dimensions.
//
// Versions, side by side (bench/matmul.ts times them; `matmulConfig()` picks per device and shape):
//   v1  one output per thread: the obvious kernel, kept as the baseline.
//   v2  register blocking: an 8×8 workgroup where every thread computes a TM×TN block of C, so each k step
//       loads TM + TN values and does TM·TN multiply-adds. No workgroup memory: on lavapipe, barriers and
//       shared memory are slow while the CPU caches already serve the re-reads. The block is unrolled in the
//       generated WGSL so every accumulator is a scalar register. Operands are loaded as vec4 where their
//       layout allows (see ALoad / BLoad).
//   v3  v2's idea across a subgroup: lanes share A values through subgroupBroadcast instead of each lane
//       gathering them (see v3Source). 1.8× v2 on lavapipe at 1024²; the default where subgroups are 8 wide.
import { DTypeError, GpuError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { MAX_RANK, type StorageType } from '../core/kernel.ts';
import { broadcastShapes, sizeOf } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { HELPERS } from './elementwise.ts';
import { halfKernel } from './wgsl.ts';
import type { DType } from '../core/dtype.ts';

export type Activation = 'none' | 'relu' | 'gelu' | 'quickgelu';

const ACTIVATION: Record<Activation, (v: string) => string> = {
  none: (v) => v,
  relu: (v) => `max(${v}, 0.0)`,
  gelu: (v) => `gelu_(${v})`,
  quickgelu: (v) => `(${v} * sigmoid_(1.702 * ${v}))`,
};

export interface MatmulConfig {
  version: 'v1' | 'v2' | 'v3' | 'v4';
  /** Rows and columns of C per thread (v2, v4), columns per lane (v3). */
  tm: number;
  tn: number;
}

/**
 * The fixed default, from `npm run bench` on lavapipe (bench/RESULTS.md): v3 with 4 columns per lane where the
 * device has 8-lane subgroups, else v2 with an 8×8 block.
 */
export function defaultMatmulConfig(): MatmulConfig {
  return unsupported({ version: 'v3', tm: 8, tn: 4 }) === null ? { version: 'v3', tm: 8, tn: 4 } : { version: 'v2', tm: 8, tn: 8 };
}

/** Size class of a matmul dimension for tuning: small (≤ 96), medium (≤ 384) or large. */
const sizeClass = (d: number) => (d <= 96 ? 's' : d <= 384 ? 'm' : 'l');

/**
 * How the operands lie in memory, which decides the loads a variant can vectorise: A is 'n' when its rows are
 * contiguous along k (row-major) and 't' otherwise (a transposed view: the xᵀ·g of a weight gradient); B is 'n'
 * when contiguous along n and 't' otherwise (x·Wᵀ with PyTorch's [out, in] weights). A forward linear layer is
 * 'nt', its input gradient g·W 'nn', its weight gradient xᵀ·g 'tn'.
 */
export type MatmulLayout = 'nn' | 'nt' | 'tn' | 'tt';
export const TUNED_LAYOUTS: MatmulLayout[] = ['nn', 'nt', 'tn'];
export const layoutOf = (a: Tensor, b: Tensor): MatmulLayout => `${a.strides[a.rank - 1] === 1 ? 'n' : 't'}${b.strides[b.rank - 1] === 1 ? 'n' : 't'}` as MatmulLayout;

/**
 * The tuning bucket of an [M, K] · [K, N] product: one size class per dimension ("sml" = small M, …), and the
 * layout when it is not 'nn' ("sml:tn").
 */
export const matmulBucket = (M: number, N: number, K: number, layout: MatmulLayout = 'nn'): string => `${sizeClass(M)}${sizeClass(N)}${sizeClass(K)}${layout === 'nn' ? '' : `:${layout}`}`;

/** A shape of each bucket, what the tuner times. */
export const BUCKET_SIZES: Record<string, number> = { s: 64, m: 256, l: 512 };

/** Per-bucket choices measured on this device (kernels/tune.ts), consulted before the default. */
let tuned: Record<string, MatmulConfig> = {};

/** Installs (or, with {}, clears) the measured choices. */
export function setMatmulTuning(choices: Record<string, MatmulConfig>): void {
  tuned = { ...choices };
}

/** The variant for an [M, K] · [K, N] product: the tuned one for its bucket when the device can run it, else the default. */
export function matmulConfig(M = 0, N = 0, K = 0, layout: MatmulLayout = 'nn'): MatmulConfig {
  const choice = tuned[matmulBucket(M, N, K, layout)];
  return choice && unsupported(choice) === null ? choice : defaultMatmulConfig();
}

/** Why this device cannot run a variant (then it is never silently replaced by another), or null. */
export function unsupported(config: MatmulConfig): string | null {
  const width = getEngine().gpu.subgroupSize;
  return config.version === 'v3' && width !== SUBGROUP ? `matmul v3 needs subgroups of exactly ${SUBGROUP} lanes; this device has ${width === null ? 'no fixed-width subgroups' : `${width}-lane subgroups`}` : null;
}

/** Every version and tile the benchmark measures (and the tests check). */
export const MATMUL_VARIANTS: MatmulConfig[] = [
  { version: 'v1', tm: 1, tn: 1 },
  { version: 'v2', tm: 4, tn: 4 },
  { version: 'v2', tm: 4, tn: 8 },
  { version: 'v2', tm: 8, tn: 4 },
  { version: 'v2', tm: 8, tn: 8 },
  { version: 'v3', tm: 8, tn: 2 },
  { version: 'v3', tm: 8, tn: 4 },
  { version: 'v3', tm: 8, tn: 8 },
  { version: 'v4', tm: 4, tn: 4 },
  { version: 'v4', tm: 8, tn: 4 },
];

const WG = 8; // threads per workgroup side

const UNIFORMS = {
  M: 'u32', N: 'u32', K: 'u32',
  batchRank: 'u32', batchShape: 'vec8u', aBatch: 'vec8u', bBatch: 'vec8u',
  offA: 'u32', sAm: 'u32', sAk: 'u32',
  offB: 'u32', sBk: 'u32', sBn: 'u32',
  offBias: 'u32',
} as const;

const BATCH_OFFSETS = `
  var aOff = u.offA;
  var bOff = u.offB;
  var rem = batch;
  for (var d = i32(u.batchRank) - 1; d >= 0; d--) {
    let extent = at8(u.batchShape, u32(d));
    let coord = rem % extent;
    rem = rem / extent;
    aOff += coord * at8(u.aBatch, u32(d));
    bOff += coord * at8(u.bBatch, u32(d));
  }`;

function v1Source(bias: boolean, act: Activation): string {
  return `${HELPERS}
@compute @workgroup_size(${WG}, ${WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.y;
  let col = gid.x;
  let batch = gid.z;
  if (row >= u.M || col >= u.N) { return; }
  ${BATCH_OFFSETS}
  var acc = 0.0;
  for (var k = 0u; k < u.K; k++) {
    acc = fma(a[aOff + row * u.sAm + k * u.sAk], b[bOff + k * u.sBk + col * u.sBn], acc);
  }
  ${bias ? 'acc += bias[u.offBias + col];' : ''}
  c[(batch * u.M + row) * u.N + col] = ${ACTIVATION[act]('acc')};
}`;
}

/**
 * WGSL that stores a thread's TM × TN block c{i}_{j} at rows row0 + i and columns col0 + j of C, skipping
 * what lies outside it, with the fused bias and activation (the epilogue v2 and v4 share).
 */
function storeBlock(rows: number[], cols: number[], bias: boolean, act: Activation): string[] {
  const store: string[] = [];
  for (const i of rows) {
    store.push(`if (row0 + ${i}u < u.M) {`);
    store.push(`  let base${i} = (batch * u.M + row0 + ${i}u) * u.N + col0;`);
    for (const j of cols) {
      const v = bias ? `(c${i}_${j} + bias[u.offBias + col0 + ${j}u])` : `c${i}_${j}`;
      store.push(`  if (col0 + ${j}u < u.N) { c[base${i} + ${j}u] = ${ACTIVATION[act](v)}; }`);
    }
    store.push('}');
  }
  return store;
}

/**
 * A variant's source for its f16 buffers (`dtypes` names each buffer's): every load of an f16 a, b or bias is
 * widened to f32 where it is read, so the products accumulate in f32 whatever the storage, and an f16 c gets the
 * f32 result rounded once at each store. All f32: the source unchanged.
 */
function withHalfStorage(source: string, aLoad: string, bLoad: string, dtypes: Record<'a' | 'b' | 'bias' | 'c', DType>, directives: string[]) {
  const widened = { a: aLoad === 'scalar' ? 'f32' : 'vec4<f32>', b: bLoad === 'scalar' ? 'f32' : 'vec4<f32>', bias: 'f32' };
  const widen = Object.fromEntries(Object.entries(widened).filter(([name]) => dtypes[name as 'a' | 'b' | 'bias'] === 'f16'));
  return halfKernel(source, widen, dtypes.c === 'f16' ? { c: 'f16' } : {}, directives);
}

/**
 * How v2 loads an operand. A: 'k4' reads four consecutive k of a row as a vec4 (row-major A), 'm4' four
 * consecutive rows at one k (a transposed A view); B: 'n4' four consecutive columns (row-major B), 'k4' four
 * consecutive k of a column (a transposed B view, i.e. x·Wᵀ with PyTorch's [out, in] weights).
 * 'scalar' reads one value through the strides. Vector modes need the dimension, strides and offset to be
 * multiples of 4.
 */
type ALoad = 'k4' | 'm4' | 'scalar';
type BLoad = 'n4' | 'k4' | 'scalar';

function v2Source(tm: number, tn: number, aLoad: ALoad, bLoad: BLoad, bias: boolean, act: Activation): string {
  const rows = [...Array(tm).keys()];
  const cols = [...Array(tn).keys()];
  const kStep = aLoad === 'k4' || bLoad === 'k4' ? 4 : 1;
  const steps = [...Array(kStep).keys()];
  const setup: string[] = [];
  const loads: string[] = [];
  // Expressions for A[row0 + i, k + kk] and B[k + kk, col0 + j] after the loads of one k step.
  let aAt: (i: number, kk: number) => string;
  let bAt: (kk: number, j: number) => string;

  if (aLoad === 'm4') {
    for (let q = 0; q < tm / 4; q++) setup.push(`let aGroup${q} = aOff + min(row0 + ${4 * q}u, u.M - 4u);`);
    for (const kk of steps) for (let q = 0; q < tm / 4; q++) loads.push(`let am${kk}_${q} = a[(aGroup${q} + (k + ${kk}u) * u.sAk) / 4u];`);
    aAt = (i, kk) => `am${kk}_${Math.floor(i / 4)}[${i % 4}]`;
  } else {
    for (const i of rows) setup.push(`let aRow${i} = aOff + min(row0 + ${i}u, u.M - 1u) * u.sAm;`);
    if (aLoad === 'k4') {
      for (const i of rows) loads.push(`let ak${i} = a[(aRow${i} + k) / 4u];`);
      aAt = (i, kk) => `ak${i}[${kk}]`;
    } else {
      for (const kk of steps) for (const i of rows) loads.push(`let as${kk}_${i} = a[aRow${i} + (k + ${kk}u) * u.sAk];`);
      aAt = (i, kk) => `as${kk}_${i}`;
    }
  }
  if (bLoad === 'n4') {
    for (let q = 0; q < tn / 4; q++) setup.push(`let bGroup${q} = bOff + min(col0 + ${4 * q}u, u.N - 4u);`);
    for (const kk of steps) for (let q = 0; q < tn / 4; q++) loads.push(`let bn${kk}_${q} = b[(bGroup${q} + (k + ${kk}u) * u.sBk) / 4u];`);
    bAt = (kk, j) => `bn${kk}_${Math.floor(j / 4)}[${j % 4}]`;
  } else {
    for (const j of cols) setup.push(`let bCol${j} = bOff + min(col0 + ${j}u, u.N - 1u) * u.sBn;`);
    if (bLoad === 'k4') {
      for (const j of cols) loads.push(`let bk${j} = b[(bCol${j} + k) / 4u];`);
      bAt = (kk, j) => `bk${j}[${kk}]`;
    } else {
      for (const kk of steps) for (const j of cols) loads.push(`let bs${kk}_${j} = b[bCol${j} + (k + ${kk}u) * u.sBk];`);
      bAt = (kk, j) => `bs${kk}_${j}`;
    }
  }
  for (const i of rows) for (const j of cols) setup.push(`var c${i}_${j} = 0.0;`);
  const fmas: string[] = [];
  for (const kk of steps) for (const i of rows) for (const j of cols) fmas.push(`c${i}_${j} = fma(${aAt(i, kk)}, ${bAt(kk, j)}, c${i}_${j});`);
  const store = storeBlock(rows, cols, bias, act);
  return `${HELPERS}
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
  ${store.join('\n  ')}
}`;
}

/** Chooses how v2 loads each operand from its layout (see ALoad / BLoad). */
function loadModes(a: Tensor, b: Tensor, aBatch: number[], bBatch: number[], config: MatmulConfig): { aLoad: ALoad; bLoad: BLoad } {
  const [M, K] = a.shape.slice(-2);
  const N = b.shape[b.rank - 1];
  const [sAm, sAk] = a.strides.slice(-2);
  const [sBk, sBn] = b.strides.slice(-2);
  const aligned = (...xs: number[]) => xs.every((x) => x % 4 === 0);
  const aBase = aligned(a.offset, ...aBatch);
  const bBase = aligned(b.offset, ...bBatch);
  const aLoad: ALoad =
    aBase && sAk === 1 && aligned(K, sAm) ? 'k4' : aBase && sAm === 1 && M > 1 && aligned(M, sAk, config.tm) ? 'm4' : 'scalar';
  const bLoad: BLoad =
    bBase && sBn === 1 && N > 1 && aligned(N, sBk, config.tn) ? 'n4' : bBase && sBk === 1 && aligned(K, sBn) ? 'k4' : 'scalar';
  return { aLoad, bLoad };
}

/**
 * v3: subgroup broadcast. A subgroup of 8 lanes computes an 8-row × 8·TN-column block: at each k, lane L
 * loads A[row0 + L, k] (one gather for all eight rows) and its own TN values of B; then eight
 * subgroupBroadcast calls hand every lane each row's A value. Compared with v2 this trades 7 of every 8 A
 * loads for register shuffles, which lavapipe does in one instruction. Needs subgroups of exactly 8 lanes.
 * Lanes own columns col0 + L + 8j, so B loads are coalesced across the subgroup.
 */
function v3Source(tn: number, aLoad: 'k4' | 'scalar', bLoad: 'k4' | 'scalar', bias: boolean, act: Activation): string {
  const S = SUBGROUP;
  const cols = [...Array(tn).keys()];
  const rows = [...Array(S).keys()];
  const kStep = aLoad === 'k4' || bLoad === 'k4' ? 4 : 1;
  const steps = [...Array(kStep).keys()];
  const setup = [`let aRow = aOff + min(row0 + lane, u.M - 1u) * u.sAm;`, ...cols.map((j) => `let bCol${j} = bOff + min(col0 + ${S * j}u, u.N - 1u) * u.sBn;`)];
  for (const r of rows) for (const j of cols) setup.push(`var c${r}_${j} = 0.0;`);
  const body: string[] = [];
  if (aLoad === 'k4') body.push('let av = a[(aRow + k) / 4u];');
  if (bLoad === 'k4') for (const j of cols) body.push(`let bv${j} = b[(bCol${j} + k) / 4u];`);
  for (const kk of steps) {
    const aValue = aLoad === 'k4' ? `av[${kk}]` : `a[aRow + (k + ${kk}u) * u.sAk]`;
    body.push(`let a${kk} = ${aValue};`);
    for (const j of cols) body.push(`let b${kk}_${j} = ${bLoad === 'k4' ? `bv${j}[${kk}]` : `b[bCol${j} + (k + ${kk}u) * u.sBk]`};`);
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
      const v = bias ? `(c${r}_${j} + bias[u.offBias + ${col}])` : `c${r}_${j}`;
      store.push(`  if (${col} < u.N) { c[base${r} + ${col}] = ${ACTIVATION[act](v)}; }`);
    }
    store.push('}');
  }
  return `${HELPERS}
@compute @workgroup_size(${S * S})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
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
}

/** v3's subgroup width; the kernel is written for exactly this many lanes. */
const SUBGROUP = 8;

/** v4's threads per workgroup side (16 × 16 = 256, WebGPU's guaranteed maximum) and k-slice per tile. */
const V4_SIDE = 16;
const V4_BK = 16;

/**
 * v4: the standard GPU design. A workgroup of 16 × 16 threads computes a (16·TM) × (16·TN) block of C: for
 * each 16-wide slice of k, all threads cooperatively copy the A block [16·TM × 16] and the B block
 * [16 × 16·TN] into workgroup memory (k-major, so the inner loop reads contiguous rows), wait at a barrier,
 * then each thread accumulates its TM × TN results from registers. Global loads go through the strides, so
 * transposed and batched views work unchanged; out-of-range rows, columns and k load zeros. On a GPU this
 * turns 16·TN (or 16·TM) global reads of each value into one; on lavapipe workgroup memory and barriers are
 * costly — the tuner (kernels/tune.ts) decides per adapter.
 */
function v4Source(tm: number, tn: number, bias: boolean, act: Activation): string {
  const [BM, BN, BK, T] = [V4_SIDE * tm, V4_SIDE * tn, V4_BK, V4_SIDE * V4_SIDE];
  const rows = [...Array(tm).keys()];
  const cols = [...Array(tn).keys()];
  const acc = rows.flatMap((i) => cols.map((j) => `var c${i}_${j} = 0.0;`));
  const fmas = rows.flatMap((i) => cols.map((j) => `c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`));
  const store = storeBlock(rows, cols, bias, act);
  return `${HELPERS}
var<workgroup> As: array<f32, ${BK * BM}>;
var<workgroup> Bs: array<f32, ${BK * BN}>;
@compute @workgroup_size(${V4_SIDE}, ${V4_SIDE})
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
      let m = e % ${BM}u;
      let kk = e / ${BM}u;
      let r = blockRow + m;
      let k = k0 + kk;
      As[e] = select(0.0, a[aOff + min(r, u.M - 1u) * u.sAm + min(k, u.K - 1u) * u.sAk], r < u.M && k < u.K);
    }
    for (var e = li; e < ${BK * BN}u; e += ${T}u) {
      let n = e % ${BN}u;
      let kk = e / ${BN}u;
      let col = blockCol + n;
      let k = k0 + kk;
      Bs[e] = select(0.0, b[bOff + min(k, u.K - 1u) * u.sBk + min(col, u.N - 1u) * u.sBn], col < u.N && k < u.K);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      ${rows.map((i) => `let a${i} = As[kk * ${BM}u + lid.y * ${tm}u + ${i}u];`).join('\n      ')}
      ${cols.map((j) => `let b${j} = Bs[kk * ${BN}u + lid.x * ${tn}u + ${j}u];`).join('\n      ')}
      ${fmas.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${store.join('\n  ')}
}`;
}


export interface MatmulOptions {
  /** Added to every row of the result: shape [N]. */
  bias?: Tensor;
  /** Applied after the bias, in the same kernel. */
  activation?: Activation;
  /**
   * The result's dtype; needed when the operands' dtypes differ (autocast's f16 activations times f32 weights).
   * Each operand is read in its own dtype and widened to f32; the result is rounded once.
   */
  dtype?: 'f32' | 'f16';
}

/**
 * A [..., M, K] operand whose batch and row axes are laid out as one run of rows, viewed as [rows, K] (or
 * null). Multiplying that by a 2-D B is one tall matmul instead of many short ones: a Linear layer on
 * [batch, tokens, width] then fills whole tiles instead of a 17-row sliver of a 64-row tile per batch.
 */
function foldRows(a: Tensor): Tensor | null {
  for (let i = 0; i < a.rank - 2; i++) {
    if (a.shape[i] !== 1 && a.strides[i] !== a.shape[i + 1] * a.strides[i + 1]) return null;
  }
  const rows = a.shape.slice(0, -1).reduce((p, q) => p * q, 1);
  return a.view([rows, a.shape[a.rank - 1]], [a.strides[a.rank - 2], a.strides[a.rank - 1]]);
}

/** The raw kernel launch (no autodiff). */
export function matmulRaw(a: Tensor, b: Tensor, options: MatmulOptions = {}, config?: MatmulConfig): Tensor {
  if (a.rank > 2 && b.rank === 2 && a.shape[a.rank - 1] === b.shape[0]) {
    const folded = foldRows(a);
    if (folded) {
      const flat = matmulRaw(folded, b, options, config);
      folded.dispose();
      const out = flat.view([...a.shape.slice(0, -1), b.shape[1]]);
      flat.dispose();
      return out;
    }
  }
  return matmulLaunch(a, b, options, config);
}

function matmulLaunch(a: Tensor, b: Tensor, options: MatmulOptions, requested: MatmulConfig | undefined): Tensor {
  const op = 'matmul';
  a.bufferFor(op);
  b.bufferFor(op);
  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`${op}: operands must have rank ≥ 2, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  const float = (t: Tensor) => t.dtype === 'f32' || t.dtype === 'f16';
  if (!float(a) || !float(b)) throw new DTypeError(`${op}: expects f32 or f16 operands, got ${a.dtype} and ${b.dtype}`);
  if (a.dtype !== b.dtype && !options.dtype) throw new DTypeError(`${op}: operands are ${a.dtype} and ${b.dtype}; pass { dtype } (the result's) to mix them`);
  const { bias, activation = 'none' } = options;
  const dtype = options.dtype ?? a.dtype;
  const [M, K] = a.shape.slice(-2);
  const [K2, N] = b.shape.slice(-2);
  if (K !== K2) throw new ShapeError(`${op}: inner dimensions differ: ${fmtShape(a.shape)} · ${fmtShape(b.shape)} (${K} vs ${K2})`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N || !float(bias))) {
    throw new ShapeError(`${op}: bias must be f32 or f16 of shape [${N}], got ${fmtShape(bias.shape)} ${bias.dtype}`);
  }
  const batchShape = broadcastShapes(op, a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (batchShape.length > MAX_RANK) throw new ShapeError(`${op}: at most ${MAX_RANK} batch dimensions`);
  const batches = sizeOf(batchShape);
  const out = Tensor.empty([...batchShape, M, N], dtype);
  if (out.size === 0) return out;
  if (K === 0) throw new ShapeError(`${op}: inner dimension is 0`);
  const batchStrides = (t: Tensor) => {
    const lead = batchShape.length - (t.rank - 2);
    return batchShape.map((_, i) => (i < lead || t.shape[i - lead] === 1 ? 0 : t.strides[i - lead]));
  };
  const [sAm, sAk] = a.strides.slice(-2);
  const [sBk, sBn] = b.strides.slice(-2);
  const config = requested ?? matmulConfig(M, N, K, layoutOf(a, b));
  const reason = unsupported(config);
  if (reason) throw new GpuError(reason);
  const aBatch = batchStrides(a);
  const bBatch = batchStrides(b);
  const modes = config.version === 'v1' || config.version === 'v4' ? { aLoad: 'scalar' as const, bLoad: 'scalar' as const } : loadModes(a, b, aBatch, bBatch, config);
  // v3 reads A by rows and B by columns per lane, so only the k-contiguous vector modes apply.
  const { aLoad, bLoad } = config.version === 'v3' ? { aLoad: modes.aLoad === 'k4' ? 'k4' : 'scalar', bLoad: modes.bLoad === 'k4' ? 'k4' : 'scalar' } as const : modes;
  const variant = config.version === 'v1' ? '' : config.version === 'v4' ? `_${config.tm}x${config.tn}` : `_${config.version === 'v3' ? '' : `${config.tm}x`}${config.tn}_a${aLoad}_b${bLoad}`;
  const dtypes = { a: a.dtype, b: b.dtype, bias: bias?.dtype ?? dtype, c: dtype };
  // Kernel names carry the dtypes when any is f16: _f16 when all are, else each buffer's (a16_b32_c16).
  const allHalf = Object.values(dtypes).every((d) => d === 'f16');
  const anyHalf = Object.values(dtypes).some((d) => d === 'f16');
  const dtypeName = allHalf ? '_f16' : anyHalf ? `_a${dtypes.a.slice(1)}_b${dtypes.b.slice(1)}${bias ? `_bias${dtypes.bias.slice(1)}` : ''}_c${dtypes.c.slice(1)}` : '';
  const name = `matmul_${config.version}${variant}${bias ? '_bias' : ''}${activation !== 'none' ? `_${activation}` : ''}${dtypeName}`;
  const kernel = getEngine().kernel(name, () => {
    const source =
      config.version === 'v1'
        ? v1Source(!!bias, activation)
        : config.version === 'v2'
          ? v2Source(config.tm, config.tn, aLoad, bLoad, !!bias, activation)
          : config.version === 'v3'
            ? v3Source(config.tn, aLoad as 'k4' | 'scalar', bLoad as 'k4' | 'scalar', !!bias, activation)
            : v4Source(config.tm, config.tn, !!bias, activation);
    const element = (load: string, t: DType) => (load === 'scalar' ? t : `vec4<${t}>`) as StorageType;
    return {
      name,
      outputs: { c: dtype },
      inputs: { a: element(aLoad, dtypes.a), b: element(bLoad, dtypes.b), ...(bias ? { bias: dtypes.bias } : {}) },
      uniforms: UNIFORMS,
      ...withHalfStorage(source, aLoad, bLoad, dtypes, config.version === 'v3' ? ['enable subgroups;', 'diagnostic(off, subgroup_uniformity);'] : []),
    };
  });
  // Rows and columns of C per workgroup.
  const tile = config.version === 'v1' ? [WG, WG] : config.version === 'v2' ? [WG * config.tm, WG * config.tn] : config.version === 'v3' ? [SUBGROUP * SUBGROUP, SUBGROUP * config.tn] : [V4_SIDE * config.tm, V4_SIDE * config.tn];
  const buffers: Record<string, GPUBuffer> = { c: out.bufferFor(op), a: a.bufferFor(op), b: b.bufferFor(op) };
  if (bias) buffers.bias = bias.bufferFor(op);
  getEngine().dispatch(
    kernel,
    buffers as never,
    {
      M, N, K,
      batchRank: batchShape.length, batchShape, aBatch, bBatch,
      offA: a.offset, sAm, sAk, offB: b.offset, sBk, sBn, offBias: bias?.offset ?? 0,
    },
    [Math.ceil(N / tile[1]), Math.ceil(M / tile[0]), batches],
  );
  return out;
}
