// Differentiable gathers: indexSelect (PyTorch's index_select) and embedding lookup; the backward is the
// deterministic scatter-add of kernels/gather.ts.
import { ShapeError, fmtShape } from '../core/errors.ts';
import { normalizeAxis, type Shape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { indexSelectBackwardRaw, indexSelectRaw } from '../kernels/gather.ts';
import { reshape } from './movement.ts';
import { recorder, type Rules } from './tape.ts';

export interface GatherOps {
  indexSelect: { shape: Shape; axis: number; index: Tensor };
}
const recordOp = recorder<GatherOps>();

/** Selects entries of x along `axis` by a 1-D i32 index (PyTorch's index_select). */
export function indexSelect(x: Tensor, axis: number, index: Tensor): Tensor {
  const a = normalizeAxis('indexSelect', axis, x.rank);
  const out = indexSelectRaw(x, a, index);
  recordOp('indexSelect', [x, null], out, { shape: x.shape, axis: a, index });
  return out;
}

/** Embedding lookup: rows of weight [V, D] for ids of any shape → [...ids.shape, D]. */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (weight.rank !== 2) throw new ShapeError(`embedding: weight must be [V, D], got ${fmtShape(weight.shape)}`);
  const flatIds = reshape(ids, [ids.size]);
  const rows = indexSelect(weight, 0, flatIds);
  const out = reshape(rows, [...ids.shape, weight.shape[1]]);
  flatIds.dispose();
  rows.dispose();
  return out;
}

export const gatherRules: Rules<GatherOps> = {
  indexSelect: (g, { shape, axis, index }) => [indexSelectBackwardRaw(g, shape, axis, index), null],
};
