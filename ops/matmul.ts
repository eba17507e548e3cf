// Differentiable matmul with an optional fused bias, activation and residual, and its backward rule (two more
// matmuls on transposed views, no copies; a bias gradient is a column sum; a residual's is the incoming gradient
// itself). Operands of different dtypes (autocast's f16 activations times f32 weights) get their gradients in
// their own dtypes.
import type { DType } from '../core/dtype.ts';
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { broadcastShapes, sameShape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from '../kernels/elementwise.ts';
import { matmulRaw, type MatmulOptions } from '../kernels/matmul.ts';
import { reduceRaw, sumToRaw } from '../kernels/reduce.ts';
import { add, unary } from './math.ts';
import { permute, reshape, transpose } from './movement.ts';
import { isGradEnabled, recorder, type Rules } from './tape.ts';

export interface MatmulOps {
  matmul: { a: Tensor; b: Tensor; biasType: DType | null; hasBias: boolean; hasResidual: boolean };
}
const recordOp = recorder<MatmulOps>();

/**
 * a · b with optional fused bias, activation and residual: residual + activation(a·b + bias) in one kernel.
 * Operands are [..., M, K] and [..., K, N] with broadcast batch dimensions; pass transpose(x) views to multiply
 * by a transpose without copying. A residual has the result's shape and dtype.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const { bias, activation = 'none', residual } = options;
  if (residual) {
    const shape = [...broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2)), a.shape[a.rank - 2], b.shape[b.rank - 1]];
    const dtype = options.dtype ?? a.dtype;
    if (!sameShape(residual.shape, shape)) throw new ShapeError(`matmul: the residual is ${fmtShape(residual.shape)}, the result ${fmtShape(shape)}`);
    if (residual.dtype !== dtype) throw new DTypeError(`matmul: the residual is ${residual.dtype}, the result ${dtype}`);
  }
  const tracked = isGradEnabled() && (a.requiresGrad || b.requiresGrad || !!bias?.requiresGrad || !!residual?.requiresGrad);
  // With autodiff on, the activation runs as its own recorded op (its backward needs the pre-activation), and a
  // residual, which comes after it, is then added after it too.
  const split = tracked && activation !== 'none';
  const fused = residual && !split && residual.isContiguous ? residual : undefined;
  const out = matmulRaw(a, b, { ...options, activation: split ? 'none' : activation, residual: fused });
  const inputs = [a, b, ...(bias ? [bias] : []), ...(fused ? [fused] : [])];
  recordOp('matmul', inputs, out, { a, b, biasType: bias?.dtype ?? null, hasBias: !!bias, hasResidual: !!fused });
  let result = out;
  if (split) {
    result = unary(activation, out);
    out.dispose();
  }
  if (residual && !fused) {
    const sum = add(result, residual);
    result.dispose();
    result = sum;
  }
  return result;
}

export const matmulRules: Rules<MatmulOps> = {
  matmul: (g, { a, b, biasType, hasBias, hasResidual }, [na, nb, ...rest]) => [
    na
      ? a.rank === 2 && b.rank > 2
        ? sharedLeftGrad(g, b, floatType(a))
        : sumToRaw(matmulRaw(g, transpose(b), { dtype: floatType(a) }), a.shape)
      : null,
    nb ? (b.rank === 2 && a.rank > 2 ? sharedRightGrad(a, g, b, floatType(b)) : sumToRaw(matmulRaw(transpose(a), g, { dtype: floatType(b) }), b.shape)) : null,
    // Summed straight into the bias's dtype (under amp an f16 gradient into an f32 bias: no cast after).
    ...(hasBias ? [rest[0] ? reduceRaw('sum', g, [...Array(g.rank - 1).keys()], false, 1, biasType!) : null] : []),
    ...(hasResidual ? [rest[hasBias ? 1 : 0] ? g.view(g.shape, g.strides) : null] : []),
  ],
};

const floatType = (t: Tensor): 'f32' | 'f16' => (t.dtype === 'f16' ? 'f16' : 'f32');

/**
 * d(b) for a 2-D `b` shared across the batch of `a` (a Linear's weight): one [K, rows]·[rows, N] product over all
 * rows at once. When `b` is a transposed view — Linear computes x·Wᵀ — the product is taken the other way round,
 * [N, rows]·[rows, K], and returned transposed: the gradient that reaches W through the transpose's backward is
 * then contiguous, where it would otherwise be copied once more to be stored as W's gradient.
 */
function sharedRightGrad(a: Tensor, g: Tensor, b: Tensor, dtype: 'f32' | 'f16'): Tensor {
  const aRows = reshape(a, [-1, a.shape[a.rank - 1]]);
  const gRows = reshape(g, [-1, g.shape[g.rank - 1]]);
  const columnMajor = b.strides[0] === 1 && b.strides[1] === b.shape[0];
  return columnMajor ? transpose(matmulRaw(transpose(gRows), aRows, { dtype })) : matmulRaw(transpose(aRows), gRows, { dtype });
}

/**
 * d(a) for a 2-D `a` shared across the batch of `b` (a convolution's weight times its columns): one
 * [M, rows]·[rows, K] product over every batch's columns, never a [batch, M, K] stack of per-batch products
 * summed afterwards (which for ViT-B/32's patch embedding at batch 32 is 300 MB, over many devices' binding limit).
 */
function sharedLeftGrad(g: Tensor, b: Tensor, dtype: 'f32' | 'f16'): Tensor {
  const r = g.rank;
  const batch = [...Array(r - 2).keys()];
  const [gv, bv] = [permute(g, [r - 2, ...batch, r - 1]), permute(b, [...batch, r - 1, r - 2])]; // [M, …, N], [… , N, K]
  const [gc, bc] = [contiguousCopy(gv), contiguousCopy(bv)];
  const [M, K] = [g.shape[r - 2], b.shape[r - 2]];
  const [gRows, bRows] = [gc.view([M, gc.size / M]), bc.view([bc.size / K, K])];
  const out = matmulRaw(gRows, bRows, { dtype });
  for (const t of [gv, bv, gc, bc, gRows, bRows]) t.dispose();
  return out;
}
