// Differentiable training-mode batch norm (kernels/batchnorm.ts) and its backward rule.
import { Tensor } from '../core/tensor.ts';
import { batchNormBackwardRaw, batchNormRaw } from '../kernels/batchnorm.ts';
import { recorder, type Rules } from './tape.ts';

export interface BatchNormOps {
  batchNorm2d: { x: Tensor; weight: Tensor; mean: Tensor; rstd: Tensor };
}
const recordOp = recorder<BatchNormOps>();

/**
 * Training-mode batch norm of x [N, C, H, W]; returns y and the batch statistics (mean, biased variance) that
 * a BatchNorm2d layer folds into its running averages.
 */
export function batchNorm2dTrain(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): { y: Tensor; mean: Tensor; variance: Tensor } {
  const { y, mean, variance, rstd } = batchNormRaw(x, weight, bias, eps);
  recordOp('batchNorm2d', [x, weight, bias], y, { x, weight, mean, rstd });
  rstd.dispose();
  return { y, mean, variance };
}

export const batchNormRules: Rules<BatchNormOps> = {
  batchNorm2d: (g, { x, weight, mean, rstd }) => {
    const { dx, dw, db } = batchNormBackwardRaw(g, x, weight, mean, rstd);
    return [dx, dw, db];
  },
};
