// Batched matrix multiplication C[b] = A[b] · B[b] (+ bias, then an activation), both operands read through
// arbitrary strides — a transposed operand is just a view, never a copy — with broadcast batch dimensions.
//
// Versions, side by side (bench/matmul.ts times them; `matmulConfig.version` selects):
//   v1  one output per thread: the obvious kernel, kept as the baseline.
//   v2  register blocking: an 8×8 workgroup where every thread computes a TM×TN block of C, so each k step
//       loads TM + TN values and does TM·TN multiply-adds. No workgroup memory: on lavapipe, barriers and
//       shared memory are slow while the CPU caches already serve the re-reads. The block is unrolled in the
//       generated WGSL so every accumulator is a scalar register. When B is row-major with N and its offset
//       multiples of 4, rows of B are loaded as vec4.
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine, MAX_RANK } from '../core/engine.ts';
import { isGradEnabled } from '../core/autograd.ts';
import { broadcastShapes, sizeOf } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { recordOp } from './autodiff.ts';
import { HELPERS } from './elementwise.ts';
import { unary } from './math.ts';

export type Activation = 'none' | 'relu' | 'gelu' | 'quickgelu';

const ACTIVATION: Record<Activation, (v: string) => string> = {
  none: (v) => v,
  relu: (v) => `max(${v}, 0.0)`,
  gelu: (v) => `gelu_(${v})`,
  quickgelu: (v) => `(${v} * sigmoid_(1.702 * ${v}))`,
};

export interface MatmulConfig {
  version: 'v1' | 'v2';
  /** Rows and columns of C per thread in v2. */
  tm: number;
  tn: number;
}

/** The kernel choice; bench/matmul.ts measures the alternatives on the current adapter. */
export const matmulConfig: MatmulConfig = { version: 'v2', tm: 4, tn: 4 };

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

function v2Source(tm: number, tn: number, vecB: boolean, bias: boolean, act: Activation): string {
  const rows = [...Array(tm).keys()];
  const cols = [...Array(tn).keys()];
  const lines: string[] = [];
  for (const i of rows) lines.push(`let aRow${i} = aOff + min(row0 + ${i}u, u.M - 1u) * u.sAm;`);
  if (vecB) {
    for (let j = 0; j < tn; j += 4) lines.push(`let bCol${j} = min(col0 + ${j}u, u.N - 4u);`);
  } else {
    for (const j of cols) lines.push(`let bCol${j} = bOff + min(col0 + ${j}u, u.N - 1u) * u.sBn;`);
  }
  for (const i of rows) for (const j of cols) lines.push(`var c${i}_${j} = 0.0;`);
  const body: string[] = [];
  for (const i of rows) body.push(`let a${i} = a[aRow${i} + k * u.sAk];`);
  if (vecB) {
    for (let j = 0; j < tn; j += 4) {
      body.push(`let bv${j} = b[(bOff + k * u.sBk + bCol${j}) / 4u];`);
      for (let q = 0; q < 4; q++) body.push(`let b${j + q} = bv${j}[${q}];`);
    }
  } else {
    for (const j of cols) body.push(`let b${j} = b[bCol${j} + k * u.sBk];`);
  }
  for (const i of rows) for (const j of cols) body.push(`c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`);
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
  return `${HELPERS}
@compute @workgroup_size(${WG}, ${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row0 = (wid.y * ${WG}u + lid.y) * ${tm}u;
  let col0 = (wid.x * ${WG}u + lid.x) * ${tn}u;
  let batch = wid.z;
  if (row0 >= u.M || col0 >= u.N) { return; }
  ${BATCH_OFFSETS}
  ${lines.join('\n  ')}
  for (var k = 0u; k < u.K; k++) {
    ${body.join('\n    ')}
  }
  ${store.join('\n  ')}
}`;
}

export interface MatmulOptions {
  /** Added to every row of the result: shape [N]. */
  bias?: Tensor;
  /** Applied after the bias, in the same kernel. */
  activation?: Activation;
}

/** The raw kernel launch (no autodiff). */
export function matmulRaw(a: Tensor, b: Tensor, { bias, activation = 'none' }: MatmulOptions = {}, config = matmulConfig): Tensor {
  const op = 'matmul';
  a.bufferFor(op);
  b.bufferFor(op);
  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`${op}: operands must have rank ≥ 2, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  if (a.dtype !== 'f32' || b.dtype !== 'f32') throw new DTypeError(`${op}: expects f32 operands, got ${a.dtype} and ${b.dtype}`);
  const [M, K] = a.shape.slice(-2);
  const [K2, N] = b.shape.slice(-2);
  if (K !== K2) throw new ShapeError(`${op}: inner dimensions differ: ${fmtShape(a.shape)} · ${fmtShape(b.shape)} (${K} vs ${K2})`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N || bias.dtype !== 'f32')) {
    throw new ShapeError(`${op}: bias must be f32 of shape [${N}], got ${fmtShape(bias.shape)} ${bias.dtype}`);
  }
  const batchShape = broadcastShapes(op, a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (batchShape.length > MAX_RANK) throw new ShapeError(`${op}: at most ${MAX_RANK} batch dimensions`);
  const batches = sizeOf(batchShape);
  const out = Tensor.empty([...batchShape, M, N]);
  if (out.size === 0) return out;
  if (K === 0) throw new ShapeError(`${op}: inner dimension is 0`);
  const batchStrides = (t: Tensor) => {
    const lead = batchShape.length - (t.rank - 2);
    return batchShape.map((_, i) => (i < lead || t.shape[i - lead] === 1 ? 0 : t.strides[i - lead]));
  };
  const [sAm, sAk] = a.strides.slice(-2);
  const [sBk, sBn] = b.strides.slice(-2);
  const vecB = config.version === 'v2' && sBn === 1 && N % 4 === 0 && sBk % 4 === 0 && b.offset % 4 === 0 && config.tn % 4 === 0 && batchStrides(b).every((s) => s % 4 === 0);
  const key = `matmul:${config.version}:${config.tm}x${config.tn}:${vecB ? 'vec4' : 'scalar'}:${bias ? 'bias' : ''}:${activation}`;
  const kernel = getEngine().kernel(key, () => ({
    name: `matmul_${config.version}${config.version === 'v2' ? `_${config.tm}x${config.tn}${vecB ? '_vec4' : ''}` : ''}${bias ? '_bias' : ''}${activation !== 'none' ? `_${activation}` : ''}`,
    outputs: { c: 'f32' as const },
    inputs: { a: 'f32' as const, b: vecB ? ('vec4<f32>' as const) : ('f32' as const), ...(bias ? { bias: 'f32' as const } : {}) },
    uniforms: UNIFORMS,
    wgsl: config.version === 'v1' ? v1Source(!!bias, activation) : v2Source(config.tm, config.tn, vecB, !!bias, activation),
  }));
  const perThread = config.version === 'v1' ? [1, 1] : [config.tm, config.tn];
  const buffers: Record<string, GPUBuffer> = { c: out.bufferFor(op), a: a.bufferFor(op), b: b.bufferFor(op) };
  if (bias) buffers.bias = bias.bufferFor(op);
  getEngine().dispatch(
    kernel,
    buffers as never,
    {
      M, N, K,
      batchRank: batchShape.length, batchShape, aBatch: batchStrides(a), bBatch: batchStrides(b),
      offA: a.offset, sAm, sAk, offB: b.offset, sBk, sBn, offBias: bias?.offset ?? 0,
    },
    [Math.ceil(N / (WG * perThread[1])), Math.ceil(M / (WG * perThread[0])), batches],
  );
  return out;
}

/**
 * a · b with optional fused bias and activation. Operands are [..., M, K] and [..., K, N] with broadcast
 * batch dimensions; pass transpose(x) views to multiply by a transpose without copying.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const { bias, activation = 'none' } = options;
  const tracked = isGradEnabled() && (a.requiresGrad || b.requiresGrad || !!bias?.requiresGrad);
  // With autodiff on, the activation runs as its own recorded op: its backward needs the pre-activation.
  const out = matmulRaw(a, b, { bias, activation: tracked ? 'none' : activation });
  recordOp('matmul', bias ? [a, b, bias] : [a, b], out, { a, b });
  if (!tracked || activation === 'none') return out;
  const activated = unary(activation, out);
  out.dispose();
  return activated;
}
