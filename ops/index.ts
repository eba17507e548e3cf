/**
 * The tensor API, the package's root entry (`import * as T from 'clipgpu'`; inside the repository
 * `'../ops/index.ts'`): tensors on WebGPU, every differentiable op, reverse-mode autodiff (`backward`, `noGrad`,
 * `param`), creation and seeded random numbers, and the device, memory and profiling controls. Runs in Node and
 * in a browser alike.
 * @module clipgpu
 */
import { initGpu } from '../core/device.ts';
import { getEngine } from '../core/engine.ts';

export { Tensor, tidy, keep } from '../core/tensor.ts';
export { closeGpu, gpu } from '../core/device.ts';
export type { DType } from '../core/dtype.ts';
export { TensorError, ShapeError, DTypeError, IndexError, DisposedError, CaptureError, GpuError } from '../core/errors.ts';
export { noGrad, isGradEnabled, param, detach, type BackwardOptions } from './tape.ts';
export { backward, backwardRules, type OpName } from './backward.ts';
export { arange, randUniform, randNormal, Generator, manualSeed } from '../kernels/creation.ts';
// Symbols that kernels/ declares without a doc comment get theirs here, one re-export each (TypeDoc reads a
// comment above a re-export, not beside one name in a list).
/** A tensor of `shape` filled with `value` (dtype f32 unless given). */
export { fill } from '../kernels/creation.ts';
/** A tensor of `shape` filled with zeros (dtype f32 unless given). */
export { zeros } from '../kernels/creation.ts';
/** A tensor of `shape` filled with ones (dtype f32 unless given). */
export { ones } from '../kernels/creation.ts';
/** Zeros of t's shape and dtype. */
export { zerosLike } from '../kernels/creation.ts';
/** Ones of t's shape and dtype. */
export { onesLike } from '../kernels/creation.ts';
/** The generator random ops draw from unless given one; `manualSeed` reseeds it. */
export { defaultGenerator } from '../kernels/creation.ts';
/** A tensor or a number (broadcast as a scalar): what elementwise ops take. */
export type { Operand } from '../kernels/elementwise.ts';
export {
  neg,
  exp,
  log,
  sqrt,
  rsqrt,
  abs,
  tanh,
  sigmoid,
  relu,
  gelu,
  quickgelu,
  add,
  sub,
  mul,
  div,
  pow,
  clamp,
  where,
  maskedFill,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  cast,
} from './math.ts';
export { sum, mean, max, min, argmax, argmin, type ReduceOptions } from './reduce.ts';
export { reshape, squeeze, unsqueeze, permute, transpose, expand, slice, narrow, contiguous, concat, stack, pad, assign } from './movement.ts';
export { matmul } from './matmul.ts';
export { CapturedStep, onReplay, isCapturing } from '../core/capture.ts';
/** Compiles, in parallel, the kernels `plan` would use (see Engine.precompile); returns how many were new. */
export const precompile = (plan: () => void): Promise<number> => getEngine().precompile(plan);
export { checkpoint } from './checkpoint.ts';
/** The activation a matmul can apply after its bias, in the same kernel. */
export { type Activation } from '../kernels/matmul.ts';
/** matmul's options: a bias [N], an activation, and the result dtype when the operands' dtypes differ. */
export { type MatmulOptions } from '../kernels/matmul.ts';
export { matmulConfig, explainMatmul, useFusedAttention } from '../kernels/policy.ts';
export { softmax, logSoftmax, layerNorm } from './rowwise.ts';
export { attention, selfAttention } from './attention.ts';
export { MAX_HEAD_DIM, FUSED_HEAD_DIM } from '../kernels/attention.ts';
/** attention's options: causal masking and the score scale (1/√headDim by default). */
export { type AttentionOptions } from '../kernels/attention.ts';
export { indexSelect, embedding } from './gather.ts';
export { crossEntropy, variance, logSumExp } from './composite.ts';
export { conv2d, im2col, avgPool2d, maxPool2d, adaptiveAvgPool2d, type Conv2dOptions, type PoolOptions } from './conv.ts';
export { batchNorm2dTrain } from './batchnorm.ts';
export { customOp, type CustomOp, type CustomOpSpec, type CustomSaved, type CustomUniformType } from './custom.ts';

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
