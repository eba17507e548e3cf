// Ops composed from the primitives; their gradients come from the primitives' rules.
import { Tensor } from '../core/tensor.ts';
import { normalizeAxes } from '../core/shape.ts';
import { crossEntropyPerRow } from './rowwise.ts';
import { add, exp, log, mul, sub } from './math.ts';
import { max, mean, sum } from './reduce.ts';
import { reshape } from './movement.ts';
import { detach, noGrad } from './tape.ts';

/** Mean cross-entropy of logits [N, C] against i32 labels [N] (fused softmax + NLL per row). */
export function crossEntropy(logits: Tensor, labels: Tensor): Tensor {
  const perRow = crossEntropyPerRow(logits, labels);
  const out = mean(perRow);
  perRow.dispose();
  return out;
}

/** Variance over axes (two-pass: mean first); `correction` 1 gives the unbiased estimate. */
export function variance(x: Tensor, axes?: number | readonly number[], { keepDims = false, correction = 0 } = {}): Tensor {
  const ax = normalizeAxes('variance', axes, x.rank);
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  const mu = mean(x, ax, { keepDims: true });
  const d = sub(x, mu);
  const sq = mul(d, d);
  const s = sum(sq, ax, { keepDims });
  const out = mul(s, 1 / Math.max(n - correction, 1));
  for (const t of [mu, d, sq, s]) t.dispose();
  return out;
}

/** log Σ exp(x) over axes, stabilised by the (constant) max. */
export function logSumExp(x: Tensor, axes?: number | readonly number[], { keepDims = false } = {}): Tensor {
  const ax = normalizeAxes('logSumExp', axes, x.rank);
  const m = noGrad(() => max(x, ax, { keepDims: true }));
  const shifted = sub(x, detach(m));
  const e = exp(shifted);
  const s = sum(e, ax, { keepDims: true });
  const l = log(s);
  const kept = add(l, m);
  const out = keepDims ? kept : reshape(kept, x.shape.filter((_, i) => !ax.includes(i)));
  for (const t of [shifted, e, s, l]) t.dispose();
  if (out !== kept) kept.dispose();
  m.dispose();
  return out;
}
