// Differentiable row ops over the last axis (softmax, log-softmax, layer norm, cross-entropy per row) on the
// fused kernels of kernels/rowwise.ts, with their backward rules (also fused kernels).
import { ShapeError, fmtShape } from '../core/errors.ts';
import { normalizeAxis } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { crossEntropyBackwardRaw, crossEntropyRaw } from '../kernels/crossentropy.ts';
import { layerNormBackwardRaw, layerNormRaw } from '../kernels/layernorm.ts';
import { softmaxBackwardRaw, softmaxRaw } from '../kernels/softmax.ts';
import { recorder, type Rules } from './tape.ts';

type Saved = { x: Tensor; weight: Tensor; mean: Tensor; rstd: Tensor };
export interface RowwiseOps {
  softmax: { y: Tensor };
  logSoftmax: { y: Tensor };
  layerNorm: Saved;
  crossEntropy: { logits: Tensor; labels: Tensor };
}
const recordOp = recorder<RowwiseOps>();

function checkLastAxis(op: string, x: Tensor, axis: number): void {
  if (normalizeAxis(op, axis, x.rank) !== x.rank - 1) {
    throw new ShapeError(`${op}: only the last axis is supported (got axis ${axis} of ${fmtShape(x.shape)}); permute first`);
  }
}

/** Numerically stable softmax along the last axis. */
export function softmax(x: Tensor, axis = -1): Tensor {
  checkLastAxis('softmax', x, axis);
  const out = softmaxRaw(x, false);
  recordOp('softmax', [x], out, { y: out });
  return out;
}

/** log(softmax(x)) along the last axis, computed as x − max − log Σ exp(x − max). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  checkLastAxis('logSoftmax', x, axis);
  const out = softmaxRaw(x, true);
  recordOp('logSoftmax', [x], out, { y: out });
  return out;
}

/** Layer normalisation over the last axis with affine weight and bias (statistics in f32). */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const { y, mean, rstd } = layerNormRaw(x, weight, bias, eps);
  recordOp('layerNorm', [x, weight, bias], y, { x, weight, mean, rstd });
  mean.dispose();
  rstd.dispose();
  return y;
}

/** Per-example cross-entropy of logits [N, C] against integer labels [N]; returns [N]. */
export function crossEntropyPerRow(logits: Tensor, labels: Tensor): Tensor {
  const out = crossEntropyRaw(logits, labels);
  recordOp('crossEntropy', [logits, null], out, { logits, labels });
  return out;
}

export const rowwiseRules: Rules<RowwiseOps> = {
  softmax: (g, { y }) => [softmaxBackwardRaw(y, g, false)],
  logSoftmax: (g, { y }) => [softmaxBackwardRaw(y, g, true)],
  layerNorm: (g, { x, weight, mean, rstd }) => {
    const { dx, dw, db } = layerNormBackwardRaw(g, x, weight, mean, rstd);
    return [dx, dw, db];
  },
  crossEntropy: (g, { logits, labels }) => [crossEntropyBackwardRaw(g, logits, labels), null],
};
