// The public tensor API: core types plus every differentiable op. `import * as T from '../ops/index.ts'`.
import { initGpu } from '../core/device.ts';
import { getEngine } from '../core/engine.ts';

export { Tensor, tidy, keep } from '../core/tensor.ts';
export { closeGpu, gpu } from '../core/device.ts';
export type { DType } from '../core/dtype.ts';
export * from '../core/errors.ts';
export { noGrad, isGradEnabled, param, detach, type BackwardOptions } from './tape.ts';
export { backward, backwardRules, type OpName } from './backward.ts';
export { fill, zeros, ones, zerosLike, onesLike, arange, randUniform, randNormal, Generator, manualSeed, defaultGenerator } from '../kernels/creation.ts';
export type { Operand } from '../kernels/elementwise.ts';
export * from './math.ts';
export { sum, mean, max, min, argmax, argmin } from './reduce.ts';
export { reshape, squeeze, unsqueeze, permute, transpose, expand, slice, narrow, contiguous, concat, stack, pad, assign } from './movement.ts';
export { matmul } from './matmul.ts';
export { type Activation, type MatmulOptions } from '../kernels/matmul.ts';
export { matmulConfig, explainMatmul, useFusedAttention } from '../kernels/policy.ts';
export { softmax, logSoftmax, layerNorm } from './rowwise.ts';
export { attention, selfAttention } from './attention.ts';
export { MAX_HEAD_DIM, FUSED_HEAD_DIM, type AttentionOptions } from '../kernels/attention.ts';
export { indexSelect, embedding } from './gather.ts';
export { crossEntropy, variance, logSumExp } from './composite.ts';
export { conv2d, im2col, avgPool2d, maxPool2d, adaptiveAvgPool2d, type Conv2dOptions, type PoolOptions } from './conv.ts';
export { batchNorm2dTrain } from './batchnorm.ts';

/** Opens the WebGPU device; call once before creating tensors. */
export async function init(): Promise<void> {
  await initGpu();
  getEngine();
}

/** GPU memory, pool and pipeline statistics. */
export const memory = () => getEngine().stats();
/** Restarts memory().peakBytes from the bytes live now, to measure the peak of what follows. */
export const resetPeakMemory = () => getEngine().resetPeak();

/** GPU time per kernel over what `record` dispatches (timestamp queries; null without timestamp-query). */
export const profile = (record: () => unknown, options?: { byGrid?: boolean }) => getEngine().profile(record, options);

/** Frees every pooled (currently unused) GPU buffer once queued work is done, e.g. between phases of a program. */
export const releasePooled = (): Promise<void> => getEngine().trim();

/** Waits for all submitted GPU work (and surfaces any WebGPU error). */
export const sync = (): Promise<void> => getEngine().sync();
