// Differentiable convolution and pooling: im2col (its backward is col2im), conv2d as im2col + one matmul
// (a 1×1 convolution skips im2col; a patch convolution — stride equal to the kernel, no padding, ViT's patch
// embedding — gets its columns by one strided copy), average / max / adaptive-average pooling.
import { ShapeError, fmtShape } from '../core/errors.ts';
import { Tensor } from '../core/tensor.ts';
import { col2imRaw, geometry, im2colRaw, poolBackwardRaw, poolRaw, type ConvGeometry, type PoolGeometry } from '../kernels/conv.ts';
import { add } from './math.ts';
import { matmul } from './matmul.ts';
import { contiguous, permute, reshape } from './movement.ts';
import { recorder, type Rules } from './tape.ts';

export interface ConvOps {
  im2col: { geometry: ConvGeometry };
  pool2d: { geometry: PoolGeometry; argmax: Tensor };
}
const recordOp = recorder<ConvOps>();

/** Receptive fields as columns (see im2colRaw); differentiable. */
export function im2col(x: Tensor, kh: number, kw: number, stride = 1, padding = 0): Tensor {
  const g = geometry('im2col', x, kh, kw, stride, padding);
  const out = im2colRaw(x, g);
  recordOp('im2col', [x], out, { geometry: g });
  return out;
}

/** conv2d's stride, zero padding, optional bias [O] and result dtype. */
export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  bias?: Tensor;
  /** The result's dtype when the input's and the weight's differ (autocast: f16 images, f32 weights). */
  dtype?: 'f32' | 'f16';
}

/** 2-D convolution (cross-correlation, as PyTorch) of x [N, C, H, W] with weight [O, C, kh, kw]. */
export function conv2d(x: Tensor, weight: Tensor, { stride = 1, padding = 0, bias, dtype }: Conv2dOptions = {}): Tensor {
  if (weight.rank !== 4) throw new ShapeError(`conv2d: weight must be [O, C, kh, kw], got ${fmtShape(weight.shape)}`);
  const [O, Cw, kh, kw] = weight.shape;
  const g = geometry('conv2d', x, kh, kw, stride, padding);
  if (Cw !== g.C) throw new ShapeError(`conv2d: weight ${fmtShape(weight.shape)} expects ${Cw} input channels, input ${fmtShape(x.shape)} has ${g.C}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== O)) throw new ShapeError(`conv2d: bias must be [${O}], got ${fmtShape(bias.shape)}`);
  const pointwise = kh === 1 && kw === 1 && stride === 1 && padding === 0;
  const patches = !pointwise && kh === kw && stride === kh && padding === 0 && g.H % kh === 0 && g.W % kw === 0;
  const cols = pointwise ? reshape(x, [g.N, g.C, g.H * g.W]) : patches ? patchColumns(x, g) : im2col(x, kh, kw, stride, padding);
  const w2 = reshape(weight, [O, Cw * kh * kw]);
  const y = matmul(w2, cols, { dtype }); // [N, O, Ho·Wo]: W broadcast over the batch
  cols.dispose();
  w2.dispose();
  const shaped = reshape(y, [g.N, O, g.Ho, g.Wo]);
  y.dispose();
  if (!bias) return shaped;
  const b = reshape(bias, [O, 1, 1]);
  const out = add(shaped, b);
  b.dispose();
  shaped.dispose();
  return out;
}

/**
 * im2col's columns for non-overlapping patches that tile the image: x [N, C, Ho·kh, Wo·kw] viewed as
 * [N, C, Ho, kh, Wo, kw], permuted to [N, C, kh, kw, Ho, Wo] and copied once — a reshuffle with no index
 * decoding per element (its gradient is the inverse reshuffle, through the view ops' rules).
 */
function patchColumns(x: Tensor, g: ConvGeometry): Tensor {
  const grid = reshape(x, [g.N, g.C, g.Ho, g.kh, g.Wo, g.kw]);
  const ordered = permute(grid, [0, 1, 3, 5, 2, 4]);
  const copy = contiguous(ordered);
  const cols = reshape(copy, [g.N, g.C * g.kh * g.kw, g.Ho * g.Wo]);
  for (const t of [grid, ordered, copy]) t.dispose();
  return cols;
}

function pool(x: Tensor, g: PoolGeometry): Tensor {
  const { y, argmax } = poolRaw(x, g);
  recordOp('pool2d', [x], y, { geometry: g, argmax });
  argmax.dispose();
  return y;
}

/** Pooling's stride (the kernel size by default) and zero padding. */
export interface PoolOptions {
  stride?: number;
  padding?: number;
  /** Average pooling: whether padded zeros count in the divisor (PyTorch's default: true). */
  countIncludePad?: boolean;
}

/** Average pooling with a square kernel (stride defaults to the kernel size, as PyTorch). */
export function avgPool2d(x: Tensor, kernel: number, { stride = kernel, padding = 0, countIncludePad = true }: PoolOptions = {}): Tensor {
  return pool(x, { ...geometry('avgPool2d', x, kernel, kernel, stride, padding), kind: 'avg', countIncludePad });
}

/** Max pooling with a square kernel (stride defaults to the kernel size). */
export function maxPool2d(x: Tensor, kernel: number, { stride = kernel, padding = 0 }: PoolOptions = {}): Tensor {
  return pool(x, { ...geometry('maxPool2d', x, kernel, kernel, stride, padding), kind: 'max', countIncludePad: false });
}

/** Adaptive average pooling to [outH, outW] (PyTorch's windows: floor(i·H/out) to ceil((i+1)·H/out)). */
export function adaptiveAvgPool2d(x: Tensor, [outH, outW]: readonly [number, number]): Tensor {
  const g = geometry('adaptiveAvgPool2d', x, 1, 1, 1, 0);
  if (!(outH >= 1 && outW >= 1)) throw new ShapeError(`adaptiveAvgPool2d: output size must be ≥ 1, got [${outH}, ${outW}]`);
  return pool(x, { ...g, Ho: outH, Wo: outW, kind: 'adaptive', countIncludePad: false });
}

export const convRules: Rules<ConvOps> = {
  im2col: (g, { geometry }) => [col2imRaw(g, geometry)],
  pool2d: (g, { geometry, argmax }) => [poolBackwardRaw(g, argmax, geometry)],
};
