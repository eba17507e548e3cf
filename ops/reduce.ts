// Differentiable reductions (sum, mean, max, min) and the index reductions (argmax, argmin: no gradient),
// with their backward rules: a reduction's gradient is the upstream gradient broadcast back over the reduced
// axes (for max/min only where the extremum was, shared equally between ties as PyTorch's amax/amin).
import { normalizeAxes, sizeOf, type Shape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { elementwise as ew } from '../kernels/elementwise.ts';
import { reduceRaw } from '../kernels/reduce.ts';
import { expand, reshape } from './movement.ts';
import { recorder, type Rules } from './tape.ts';

type Extremum = { x: Tensor; axes: number[]; out: Tensor };
export interface ReduceOps {
  sum: { shape: Shape; axes: number[]; scale: number };
  max: Extremum;
  min: Extremum;
}
const recordOp = recorder<ReduceOps>();

/** keepDims: keep each reduced axis with size 1 (PyTorch's keepdim). */
export interface ReduceOptions {
  keepDims?: boolean;
}

/** Sum over `axes` (all axes when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], { keepDims = false }: ReduceOptions = {}): Tensor {
  const ax = normalizeAxes('sum', axes, x.rank);
  const out = reduceRaw('sum', x, ax, keepDims);
  recordOp('sum', [x], out, { shape: x.shape, axes: ax, scale: 1 });
  return out;
}

/** Mean over `axes` (all axes when omitted), as one fused kernel. */
export function mean(x: Tensor, axes?: number | readonly number[], { keepDims = false }: ReduceOptions = {}): Tensor {
  const ax = normalizeAxes('mean', axes, x.rank);
  const scale = 1 / Math.max(1, sizeOf(ax.map((a) => x.shape[a])));
  const out = reduceRaw('sum', x, ax, keepDims, scale);
  recordOp('sum', [x], out, { shape: x.shape, axes: ax, scale });
  return out;
}

function extremum(op: 'max' | 'min', x: Tensor, axes: number | readonly number[] | undefined, keepDims: boolean): Tensor {
  const ax = normalizeAxes(op, axes, x.rank);
  const out = reduceRaw(op, x, ax, keepDims);
  recordOp(op, [x], out, { x, axes: ax, out });
  return out;
}

/** Maximum over `axes` (all axes when omitted); the gradient goes to the maxima, split evenly between ties. */
export const max = (x: Tensor, axes?: number | readonly number[], { keepDims = false }: ReduceOptions = {}): Tensor => extremum('max', x, axes, keepDims);
/** Minimum over `axes` (all axes when omitted); the gradient goes to the minima, split evenly between ties. */
export const min = (x: Tensor, axes?: number | readonly number[], { keepDims = false }: ReduceOptions = {}): Tensor => extremum('min', x, axes, keepDims);

/** Index (i32) of the largest value along one axis; the first one on ties. */
export function argmax(x: Tensor, axis = -1, { keepDims = false }: ReduceOptions = {}): Tensor {
  return reduceRaw('argmax', x, normalizeAxes('argmax', axis, x.rank), keepDims);
}
/** Index (i32) of the smallest value along one axis; the first one on ties. */
export function argmin(x: Tensor, axis = -1, { keepDims = false }: ReduceOptions = {}): Tensor {
  return reduceRaw('argmin', x, normalizeAxes('argmin', axis, x.rank), keepDims);
}

/** g broadcast back over the axes a reduction removed. */
function unreduce(g: Tensor, shape: Shape, axes: readonly number[]): Tensor {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  return expand(reshape(g, kept), shape);
}

function extremumGrad(g: Tensor, { x, axes, out }: Extremum): (Tensor | null)[] {
  const mask = ew('eq', [x, unreduce(out, x.shape, axes)]);
  const maskF = ew(g.dtype === 'f16' ? 'toF16' : 'toF32', [mask]); // in g's dtype: the share is g / count
  const count = reduceRaw('sum', maskF, axes, true);
  const share = ew('div', [unreduce(g, x.shape, axes), count]);
  return [ew('mul', [share, maskF])];
}

export const reduceRules: Rules<ReduceOps> = {
  sum: (g, { shape, axes, scale }) => {
    const spread = unreduce(g, shape, axes);
    return [scale === 1 ? spread : ew('mul', [spread, scale])];
  },
  max: extremumGrad,
  min: extremumGrad,
};
