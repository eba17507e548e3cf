// Batched matrix multiplication C[b] = A[b] · B[b] (+ bias, then an activation, + a residual), both operands read through
// arbitrary strides — a transposed operand is just a view, never a copy — with broadcast batch dimensions.
// This file checks the operands and launches; the variants live beside it, one file each, and
// kernels/policy.ts alone picks which runs:
//   matmul/v1.ts  one output per thread: the obvious kernel, kept as the baseline.
//   matmul/v2.ts  register blocking: every thread of an 8×8 workgroup computes a TM×TN block, vec4 loads.
//   matmul/v3.ts  v2's block across an 8-lane subgroup: lanes share A through subgroupBroadcast (lavapipe's default).
//   matmul/v4.ts  tiles of A and B staged in workgroup memory: the standard design for discrete GPUs.
//   matmul/shared.ts  the uniforms, batch offsets, epilogue (bias, activation, rounding) and load modes.
// Operands may be f32 or f16 in any mix: every load widens to f32, the sums are f32, C is rounded once.
import { DTypeError, GpuError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { MAX_RANK, type StorageType } from '../core/kernel.ts';
import { broadcastShapes, broadcastStridesTo, sizeOf } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import type { DType } from '../core/dtype.ts';
import { UNIFORMS, type ALoad, type Activation, type BLoad, type MatmulConfig, type MatmulVariant } from './matmul/shared.ts';
import { v1 } from './matmul/v1.ts';
import { v2 } from './matmul/v2.ts';
import { v3 } from './matmul/v3.ts';
import { v4 } from './matmul/v4.ts';
import { layoutOf, matmulConfig, matmulUnsupported } from './policy.ts';

export type { Activation, MatmulConfig } from './matmul/shared.ts';

const VARIANTS: Record<MatmulConfig['version'], MatmulVariant> = { v1, v2, v3, v4 };

/** Every version and tile the benchmark measures, the tuner chooses among (v1 aside) and the tests check. */
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

/** The vector loads the operands' layout allows (shared.ts ALoad / BLoad): dimensions, strides and offsets ÷ 4. */
function allowedLoads(a: Tensor, b: Tensor, aBatch: number[], bBatch: number[], config: MatmulConfig): { aLoad: ALoad; bLoad: BLoad } {
  const [M, K] = a.shape.slice(-2);
  const N = b.shape[b.rank - 1];
  const [sAm, sAk] = a.strides.slice(-2);
  const [sBk, sBn] = b.strides.slice(-2);
  const aligned = (...xs: number[]) => xs.every((x) => x % 4 === 0);
  const aBase = aligned(a.offset, ...aBatch);
  const bBase = aligned(b.offset, ...bBatch);
  const aLoad: ALoad = aBase && sAk === 1 && aligned(K, sAm) ? 'k4' : aBase && sAm === 1 && M > 1 && aligned(M, sAk, config.tm) ? 'm4' : 'scalar';
  const bLoad: BLoad = bBase && sBn === 1 && N > 1 && aligned(N, sBk, config.tn) ? 'n4' : bBase && sBk === 1 && aligned(K, sBn) ? 'k4' : 'scalar';
  return { aLoad, bLoad };
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
  /**
   * Added to the result after the activation, in the same kernel: a contiguous f32 or f16 tensor of the result's
   * shape (a transformer's residual stream, x + x·Wᵀ + b, without a separate add reading and writing it again).
   */
  residual?: Tensor;
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
  const { bias, activation = 'none', residual } = options;
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
  // Folded rows (matmulRaw) view the same elements in the same order, so the residual is checked by size here
  // and by shape where the op is called.
  if (residual && (!residual.isContiguous || residual.size !== out.size || !float(residual))) {
    out.dispose();
    const got = `${fmtShape(residual.shape)} ${residual.dtype}`;
    throw new ShapeError(`${op}: a residual must be a contiguous f32 or f16 tensor of the result's ${out.size} elements, got ${got}`);
  }
  if (out.size === 0) return out;
  if (K === 0) throw new ShapeError(`${op}: inner dimension is 0`);
  const batchStrides = (t: Tensor) => broadcastStridesTo(t.shape.slice(0, -2), t.strides.slice(0, -2), batchShape);
  const [sAm, sAk] = a.strides.slice(-2);
  const [sBk, sBn] = b.strides.slice(-2);
  const config = requested ?? matmulConfig(M, N, K, layoutOf(a, b));
  const reason = matmulUnsupported(config);
  if (reason) throw new GpuError(reason);
  const variant = VARIANTS[config.version];
  const aBatch = batchStrides(a);
  const bBatch = batchStrides(b);
  const { aLoad, bLoad } = variant.loads(allowedLoads(a, b, aBatch, bBatch, config));
  const dtypes = { a: a.dtype, b: b.dtype, bias: bias?.dtype ?? dtype, residual: residual?.dtype ?? dtype, c: dtype };
  const name = kernelName(config, { aLoad, bLoad }, dtypes, !!bias, activation, !!residual);
  const element = (load: string, t: DType) => (load === 'scalar' ? t : `vec4<${t}>`) as StorageType;
  const kernel = getEngine().kernel(name, () => ({
    name,
    outputs: { c: dtype },
    inputs: {
      a: element(aLoad, dtypes.a),
      b: element(bLoad, dtypes.b),
      ...(bias ? { bias: dtypes.bias } : {}),
      ...(residual ? { residual: dtypes.residual } : {}),
    },
    uniforms: UNIFORMS,
    wgsl: variant.source(config.tm, config.tn, { aLoad, bLoad, bias: !!bias, activation, residual: !!residual }),
    directives: variant.directives,
  }));
  const [tileRows, tileCols] = variant.tile(config.tm, config.tn);
  const buffers = {
    c: out.bufferFor(op),
    a: a.bufferFor(op),
    b: b.bufferFor(op),
    ...(bias ? { bias: bias.bufferFor(op) } : {}),
    ...(residual ? { residual: residual.bufferFor(op) } : {}),
  };
  getEngine().dispatch(
    kernel,
    buffers,
    {
      M, N, K,
      batchRank: batchShape.length, batchShape, aBatch, bBatch,
      offA: a.offset, sAm, sAk, offB: b.offset, sBk, sBn, offBias: bias?.offset ?? 0, offRes: residual?.offset ?? 0,
    },
    [Math.ceil(N / tileCols), Math.ceil(M / tileRows), batches],
  );
  return out;
}

/**
 * The kernel's name, which is also its cache key and its CLIPGPU_DUMP_WGSL file name: version, block, load modes,
 * epilogue and, when any buffer is f16, the dtypes (_f16 when all are, else each buffer's: _a16_b32_c16).
 */
function kernelName(
  config: MatmulConfig,
  loads: { aLoad: ALoad; bLoad: BLoad },
  dtypes: Record<'a' | 'b' | 'bias' | 'residual' | 'c', DType>,
  bias: boolean,
  activation: Activation,
  residual: boolean,
): string {
  const block = config.version === 'v1' ? '' : `_${config.tm}x${config.tn}`;
  const modes = config.version === 'v2' || config.version === 'v3' ? `_a${loads.aLoad}_b${loads.bLoad}` : '';
  const all = Object.values(dtypes);
  const bits = (d: DType) => d.slice(1);
  const half = all.every((d) => d === 'f16')
    ? '_f16'
    : all.includes('f16')
      ? `_a${bits(dtypes.a)}_b${bits(dtypes.b)}${bias ? `_bias${bits(dtypes.bias)}` : ''}${residual ? `_res${bits(dtypes.residual)}` : ''}_c${bits(dtypes.c)}`
      : '';
  return `matmul_${config.version}${block}${modes}${bias ? '_bias' : ''}${activation !== 'none' ? `_${activation}` : ''}${residual ? '_res' : ''}${half}`;
}
